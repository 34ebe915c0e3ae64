"""Small shared utilities: atomic file writes, subprocesses and git, content hashes."""
