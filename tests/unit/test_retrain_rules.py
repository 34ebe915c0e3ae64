"""Retraining's pure rules: what changed, in words; which failures are worth a retry."""

from prefect.states import Failed

from misr.errors import MisrError, StoreError
from misr.registry.retrain import changes, describe
from pipelines.user_errors import retry_unless_user_error


def test_changes_are_described_in_words():
    before = {"clips": {"a": ["1", "train", "t", "h1"], "b": ["2", "train", "t", "h2"]}}
    now = {"clips": {"a": ["1.5", "train", "t", "h1"], "b": ["2", "train", "t", "h2"], "c": [0, 0, 0, 0], "d": [0, 0, 0, 0]}}
    diff = changes(before, now)
    assert diff == {"new_clips": 2, "removed_clips": 0, "changed_labels": 1, "changed_files": 0}
    assert describe(diff) == "2 new clips, 1 changed label"
    assert describe(changes(now, now)) == "no data change"


def test_a_user_error_is_never_retried_and_anything_else_is():
    assert retry_unless_user_error(None, None, Failed(data=StoreError("cannot write to x"))) is False
    assert retry_unless_user_error(None, None, Failed(data=MisrError("diverged"))) is False
    assert retry_unless_user_error(None, None, Failed(data=ConnectionError("server went away"))) is True
