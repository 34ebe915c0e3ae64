"""The Prefect API a command's flows talk to: the user's server, or a temporary one this process owns.

Prefect's own temporary server shares the command's process group and outlives it: Ctrl-C on the
terminal kills the server under the running flow (which then retries against a dead API), and a
command killed with kill -9 leaves it behind. The one started here runs in a session of its own (the
terminal's signals do not reach it), asks the kernel to stop it when this process dies, however it
dies (Linux's PR_SET_PDEATHSIG), and is stopped when the command ends. Commands that this one starts
(`dvc repro` running `misr extract`, ...) inherit PREFECT_API_URL and use the same server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings


def _die_with_parent(parent: int) -> None:
    """In the server's process, before it runs: end when `parent` ends (SIGTERM from the kernel)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class OwnedServer(SubprocessASGIServer):
    """Prefect's temporary server (the same uvicorn app and settings), in its own session and bound to
    this process's life."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        import prefect

        parent = os.getpid()
        app_dir = str(prefect.__module_path__.parent)
        args = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"]  # fmt: skip
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        return subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=lambda: _die_with_parent(parent))


@contextmanager
def prefect_api() -> Iterator[str]:
    """Use the configured API when there is one; else own a temporary server for the block's duration."""
    configured = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    server = OwnedServer()
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        _drain_to(server)
        server.stop()


def _drain_to(server: OwnedServer, timeout: float = 5.0) -> None:
    """Send Prefect's queued run logs and events while the server still runs (after, each retries for a minute)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except Exception:  # a log that cannot be delivered must not mask how the command ended
            pass
