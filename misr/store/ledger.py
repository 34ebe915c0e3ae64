"""The test-read ledger: every read of a store's test split, on the record.

A test split read before a choice was made is no longer a test split, so each read is appended to
`test-reads.jsonl`, one JSON line: when, the store, the fingerprint of its test split (its clip keys and
labels, so a copy or a re-extraction of the same clips counts as the same split), the command and the git
commit. The ledger lies at the root of the git repository that holds the store (it is versioned with the
code: a retraining's commit takes it along), or beside the store outside any repository. `misr evaluate`,
`misr compare` and the quality report write it; a comparison reports how often each store's test had been
read before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from misr.store.layout import StoreLayout
from misr.util import proc

LEDGER_NAME = "test-reads.jsonl"


def ledger_path(store: str | Path) -> Path:
    """The repository root's ledger for a store inside a git repository, else the one beside the store."""
    root = Path(os.path.realpath(store))
    for folder in root.parents:
        if (folder / ".git").exists():
            return folder / LEDGER_NAME
    return root.parent / LEDGER_NAME


def split_fingerprint(store: str | Path) -> str:
    """The identity of a store's test split: a hash of its clips and their labels."""
    clips = StoreLayout(store).clips()
    rows = sorted(
        (k, float(y))
        for k, s, y in zip(
            clips.column("clip_key").to_pylist(), clips.column("split").to_pylist(), clips.column("label").to_pylist(), strict=True
        )
        if s == "test"
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def entries(store: str | Path) -> list[dict[str, Any]]:
    path = ledger_path(store)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash: the others still count
            continue
    return out


def reads_before(store: str | Path) -> int:
    """How many reads of this store's test split (by fingerprint) the ledger holds."""
    fingerprint = split_fingerprint(store)
    return sum(1 for e in entries(store) if e.get("fingerprint") == fingerprint)


def record_read(store: str | Path, command: str | None = None) -> int:
    """Append this read of the store's test split; returns how many reads came before it."""
    before = reads_before(store)
    path = ledger_path(store)
    root = path.parent
    where = Path(os.path.realpath(store))
    entry = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "store": str(where.relative_to(root)) if where.is_relative_to(root) else str(where),
        "fingerprint": split_fingerprint(store),
        "split": "test",
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": (proc.git(root, "rev-parse", "--verify", "-q", "HEAD", check=False) or None) if (root / ".git").exists() else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:  # one line per write: appends of concurrent readers do not mix
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return before
