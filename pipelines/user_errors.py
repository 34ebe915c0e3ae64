"""A user's mistake (`MisrError`) inside a flow: one `error:` line at the end, no traceback, no retry.

Prefect retries a failed task and logs each failure with its traceback on the console. Both are
right for a crash and wrong for a user's mistake (an unwritable folder, a diverged training): the
retry cannot succeed, and the traceback buries the one line the CLI prints. The flow run's own logs
(the API handler) keep the full record.
"""

from __future__ import annotations

import logging
from typing import Any

from misr.errors import MisrError


def retry_unless_user_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry what may be transient, never a MisrError."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # the result itself cannot be read: let the retry policy decide
        return True
    return not isinstance(exc, MisrError)


class _UserErrorsWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MisrError):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_user_error_tracebacks() -> None:
    """Drop the traceback of MisrError records on the console (idempotent; after Prefect set up logging)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _UserErrorsWithoutTraceback) for f in handler.filters):
            handler.addFilter(_UserErrorsWithoutTraceback())
