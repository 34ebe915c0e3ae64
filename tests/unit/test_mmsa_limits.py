"""A hostile MMSA pickle is refused in one line, quickly and in little memory: the restricted unpickler
limits classes, and these checks limit sizes (declared lengths, and lists that share their items)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from misr.data.mmsa import expanded_size, load
from misr.errors import MisrError
from tests.helpers import REPO


def billion_laughs(levels: int = 130, width: int = 4000) -> bytes:
    """About 1 MB of pickle whose nested lists share their items: width**levels values once expanded."""
    item: object = ["ha"] * width
    for _ in range(levels):
        item = [item] * width
    return pickle.dumps({"train": {"id": ["a"], "audio": item}}, protocol=4)


def test_lists_that_share_their_items_are_refused_within_seconds_in_little_memory(tmp_path):
    """A 1.1 MB pickle of shared nested lists once expanded until memory ran out (76 s to an 8 GiB cap)."""
    path = tmp_path / "laughs.pkl"
    path.write_bytes(billion_laughs())
    assert 0.9e6 < path.stat().st_size < 1.5e6
    # VmHWM, this process's own peak (getrusage's ru_maxrss keeps the forking pytest worker's across exec)
    probe = textwrap.dedent(f"""
        import re, time
        from pathlib import Path
        from misr.data.mmsa import load
        from misr.errors import MisrError
        start = time.perf_counter()
        try:
            load({str(path)!r})
        except MisrError as exc:
            peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) // 1024
            print("refused", round(time.perf_counter() - start, 2), peak, exc.message)
    """)
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.stdout.startswith("refused"), res.stdout + res.stderr
    _, seconds, peak_mib, message = res.stdout.split(" ", 3)
    assert float(seconds) < 5 and int(peak_mib) < 1024, res.stdout
    assert "expand to more than 200,000,000 values" in message


def test_a_declared_length_beyond_the_file_is_refused_without_allocating_it(tmp_path):
    """A 15-byte pickle declaring a 1 TiB bytes object was an instant MemoryError traceback."""
    path = tmp_path / "tib.pkl"
    path.write_bytes(b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abcd")
    assert path.stat().st_size == 15
    with pytest.raises(MisrError, match="not a readable pickle: expected 1099511627776 bytes"):
        load(path)


def test_a_cycle_and_the_limit_itself(tmp_path):
    cycle: list = []
    cycle.append(cycle)
    assert expanded_size({"train": cycle}, 1000) > 1000
    shared = [1.0] * 10
    nested = [shared] * 10  # 10 * 10 values + 10 lists + the outer list
    assert expanded_size(nested, 10**6) == 1 + 10 * 11
    assert expanded_size({"x": np.zeros((1000, 1000))}, 10**6) == 3  # an array's values are in the file's bytes
    path = tmp_path / "lists.pkl"
    path.write_bytes(pickle.dumps({"train": {"audio": [[0.0] * 1000] * 1000}}))
    assert load(path, max_elements=10**7)["train"]["audio"][0][0] == 0.0
    with pytest.raises(MisrError, match="raise data.import_max_elements"):
        load(path, max_elements=10**5)
