"""How long `misr extract` takes to stop after Ctrl-C in the middle of one long recording.

    python benchmarks/stop_time.py [--minutes 10] [--after 20] [--presses 1]

Makes a --minutes-long 1280x720 recording (as benchmarks/memory.py does), starts `misr extract` on a
corpus of that one clip in a process group of its own, waits --after seconds (the clip is then being
decoded), sends SIGINT --presses times half a second apart (a user pressing Ctrl-C again), and prints
the seconds from the first signal to the exit, the exit code, and the lines of the error output after
the signal (target: stopped within 3 s, exit 130, one "stopped" line and nothing else).
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.memory import long_video  # noqa: E402  (after the path is set)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--after", type=float, default=20.0, help="seconds of extraction before the first Ctrl-C")
    ap.add_argument("--presses", type=int, default=1, help="how many times Ctrl-C is pressed")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        (raw / "Raw" / "long").mkdir(parents=True)
        long_video(raw / "Raw" / "long" / "talk.mp4", args.minutes)
        with (raw / "label.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video_id", "clip_id", "text", "label", "mode"])
            w.writerow(["long", "talk", "set white with p two soon " * 40, "0.0", "train"])
        made = time.perf_counter() - started
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env["PREFECT_HOME"] = str(Path(tmp) / "prefect")
        cmd = [sys.executable, "-m", "pipelines.cli", "extract", str(raw), "--out", str(Path(tmp) / "store"),
               "--params", str(REPO / "params.yaml"), "-S", "data.dataset=demo"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(args.after)
        if proc.poll() is not None:
            sys.exit(f"extraction ended before the signal (exit {proc.returncode}): use a longer --minutes")
        signalled = time.perf_counter()
        for i in range(args.presses):
            os.killpg(proc.pid, signal.SIGINT)
            if i + 1 < args.presses:
                time.sleep(0.5)
        out, err = proc.communicate(timeout=300)
        took = time.perf_counter() - signalled
    lines = [line for line in err.splitlines() if line.strip()]
    logging_errors = sum("--- Logging error ---" in line for line in lines)
    print(f"recording: {args.minutes:g} min 1280x720 (made in {made:.0f} s); Ctrl-C x{args.presses} after {args.after:g} s of extraction")
    print(f"stopped in {took:.2f} s, exit {proc.returncode}; {logging_errors} '--- Logging error ---' lines")
    print("last lines of the error output:")
    for line in lines[-5:]:
        print("   ", line[:160])
    print(f"target: within 3 s, exit 130: {'met' if took <= 3 and proc.returncode == 130 else 'NOT met'}")


if __name__ == "__main__":
    main()
