"""The `misr` command as a user runs it: exit codes, messages, no tracebacks on user mistakes."""

from tests.helpers import assert_clean_error, misr


def test_help_lists_commands_and_synth_documents_options():
    res = misr("--help")
    assert res.returncode == 0
    for command in ("params", "synth", "inspect"):
        assert command in res.stdout
    res = misr("synth", "--help")
    for option in ("--seed", "--like", "--conflict-rate", "--test-conflict-rate", "--positive-ratio", "--n-train", "--out"):
        assert option in res.stdout


def test_params_prints_resolved_values(tmp_path, params_file):
    res = misr("params", cwd=tmp_path)  # params.yaml of the current folder
    assert res.returncode == 0, res.stderr
    assert "invariance:" in res.stdout and "kind: vrex" in res.stdout
    res = misr("params", "--params", params_file, "-S", "train.epochs=3")
    assert "epochs: 3" in res.stdout


def test_params_errors(tmp_path, params_file):
    assert_clean_error(misr("params", "--params", params_file, "-S", "model.name=transformer"), "model.name", "'misr'", "'late_fusion'")
    assert_clean_error(misr("params", "--params", tmp_path / "none.yaml"), "no parameters file at")
    assert_clean_error(misr("params", cwd=tmp_path / ".."), "no parameters file at params.yaml")


def test_every_command_validates_params_first(tmp_path, params_file):
    params_file.write_text(params_file.read_text().replace("epochs: 30", "epochs: -1"))
    assert_clean_error(misr("synth", "--params", params_file, "--out", tmp_path / "s"), "train.epochs")
    assert not (tmp_path / "s").exists()
    assert_clean_error(misr("inspect", tmp_path, "--params", params_file), "train.epochs")


def test_synth_then_inspect(tmp_path, params_file):
    store = tmp_path / "store"
    res = misr(
        "synth",
        "--params",
        params_file,
        "--out",
        store,
        "--n-train",
        30,
        "--n-valid",
        10,
        "--n-test",
        10,
        "--n-valid-ood",
        10,
        "--like",
        "mosei",
    )
    assert res.returncode == 0, res.stderr
    assert "valid_ood" in res.stdout
    assert "oracle" in res.stdout and "train mean" in res.stdout
    res = misr("inspect", store, "--params", params_file, "--split", "test")
    assert res.returncode == 0, res.stderr
    assert "audio (10, " in res.stdout and ", 74)" in res.stdout
    assert_clean_error(misr("synth", "--params", params_file, "--out", store), "already holds a feature store", "--force")


def test_bad_paths_and_corrupt_files_give_one_clear_line(tmp_path, params_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_clean_error(misr("synth", "--params", params_file, "--out", blocker / "store"), "cannot write to")
    assert_clean_error(misr("inspect", tmp_path / "missing", "--params", params_file), "no feature store at")
    store = tmp_path / "store"
    assert misr("synth", "--params", params_file, "--out", store, "--n-train", 10).returncode == 0
    (store / "clips.parquet").write_bytes(b"garbage")
    assert_clean_error(misr("inspect", store, "--params", params_file), "clips.parquet is not a readable Parquet file")
    assert_clean_error(misr("synth", "--params", params_file, "--out", tmp_path / "x", "--like", "iemocap"), "--like must be mosi or mosei")
    assert_clean_error(misr("synth", "--params", params_file, "--out", tmp_path / "x", "--conflict-rate", 2), "conflict_rate")
    shift_flag = misr("synth", "--params", params_file, "--out", tmp_path / "x", "--test-conflict-rate", 0.5)
    assert_clean_error(shift_flag, "--test-conflict-rate: options of the shift scenario", "data.synth.scenario=shift")
    shifted = misr(
        "synth",
        "--params",
        params_file,
        "--out",
        tmp_path / "y",
        "--n-train",
        10,
        "--test-conflict-rate",
        0.5,
        "-S",
        "data.synth.scenario=shift",
    )
    assert shifted.returncode == 0, shifted.stderr


def test_a_path_longer_than_the_system_allows_is_one_clear_line(tmp_path):
    """`OSError: [Errno 36]` was a traceback in synth --out, inspect, extract and predict."""
    long = tmp_path / ("x" * 300)
    assert_clean_error(
        misr("synth", "--out", long / "s", "--n-train", 8, "--n-valid", 4, "--n-test", 4), "File name too long", "shorter path"
    )
    assert_clean_error(misr("inspect", long), "File name too long")
    assert_clean_error(misr("predict", long / "clip.mp4", "--model", long), "File name too long")


def test_retraining_a_folder_that_is_not_a_repository_writes_nothing_into_it(tmp_path, params_file):
    """`misr retrain --repo` on a folder outside git left `.misr/` behind."""
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    assert_clean_error(misr("retrain", "--repo", folder, "--params", params_file), "is not the top folder of a git repository")
    assert list(folder.iterdir()) == []


def test_a_refused_demo_corpus_leaves_nothing_that_refuses_the_retry(tmp_path, params_file):
    """`demo-corpus --n 6` failed but left Raw/ behind, so the corrected retry was refused."""
    out = tmp_path / "demo"
    assert_clean_error(misr("demo-corpus", "--out", out, "--n", 6, "--params", params_file), "needs at least 13 clips")
    assert not out.exists() or list(out.iterdir()) == []


def test_history_shows_a_run_of_skipped_ticks_as_one_row(tmp_path, params_file):
    """After a scheduled run of 22 minutes, `misr history` was 22 "skipped" rows of four lines each."""
    import json

    audit = tmp_path / ".misr" / "audit.jsonl"
    audit.parent.mkdir()
    lock = "another retraining holds " + str(tmp_path / ".misr" / "retrain.lock")
    rows = [{"when": "2026-12-01T03:00:00+00:00", "outcome": "unchanged", "summary": "no change"}]
    rows += [{"when": f"2026-12-01T03:{m:02d}:00+00:00", "outcome": "skipped", "reason": lock} for m in range(1, 23)]
    rows += [{"when": "2026-12-01T04:00:00+00:00", "outcome": "unchanged", "summary": "no change"}]
    audit.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = misr("history", "--repo", tmp_path, "--params", params_file)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert sum("skipped" in line for line in lines) == 1
    assert any("22 ticks until 2026-12-01 03:22" in line for line in lines), res.stdout
    assert sum("unchanged" in line for line in lines) == 2
