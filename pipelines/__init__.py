"""Prefect flows: thin orchestration (retries, artifacts, task runners) over the `misr` library."""
