"""Processes a test started: wait for them, and find any that outlived the command (via /proc)."""

import os
import subprocess
import time
from pathlib import Path

import pytest


def processes_marked(mark: str) -> list[str]:
    """Command lines of every process whose environment carries MISR_TEST_MARK=mark (children inherit it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"MISR_TEST_MARK={mark}".encode() in env:
            found.append(cmd[:120])
    return found


def wait_for(condition, seconds=180):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def stopped_within(proc, seconds):
    started = time.time()
    try:
        _, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {seconds} s after the signal")
    return time.time() - started, err
