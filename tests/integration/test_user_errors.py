"""A user's mistake inside a flow: one error line, exit code 2, no traceback, no retry; outputs checked first."""

import pytest

from misr.errors import MisrError
from misr.util.atomic import check_writable
from tests.helpers import assert_clean_error, misr


def test_output_folders_are_checked_before_any_work(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(MisrError, match="cannot write to .*a-file/out"):
        check_writable(tmp_path / "a-file" / "out")
    assert check_writable(tmp_path / "new" / "deep").is_dir()
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the probe leaves nothing behind


def test_train_and_evaluate_refuse_an_unwritable_out_at_once(tmp_path, params_file):
    (tmp_path / "a-file").write_text("x")
    store = tmp_path / "store"
    assert misr("synth", "--params", params_file, "--out", store, "--n-train", 12, "--n-valid", 4, "--n-test", 4).returncode == 0
    res = misr("train", store, "--out", tmp_path / "a-file" / "m", "--params", params_file, "-S", "train.epochs=1")
    assert_clean_error(res, "cannot write to", "a-file/m")
    assert "Prefect" not in res.stderr and "prefect" not in res.stderr  # refused before any flow started
    assert_clean_error(misr("evaluate", store, "--model", tmp_path / "m", "--out", tmp_path / "a-file" / "e", "--params", params_file))


@pytest.mark.slow
def test_a_user_error_inside_the_extraction_flow_is_one_line_without_retries(tmp_path, params_file, prefect_harness):
    import os

    from prefect.settings import PREFECT_API_URL

    raw = tmp_path / "raw"
    assert (
        misr("demo-corpus", "--out", raw, "--n", 13, "--params", params_file, "-S", "data.demo_corpus.duration=[1.0, 1.2]").returncode == 0
    )
    store = tmp_path / "store"
    store.mkdir()
    (store / "audio").write_text("not a folder")  # found only when the first shard writes its audio part
    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
    try:
        res = misr("extract", raw, "--out", store, "--params", params_file, "-S", "data.dataset=demo")
    finally:
        os.environ.pop("PREFECT_API_URL")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Retry" not in res.stderr
    assert res.stderr.rstrip().splitlines()[-2].startswith("error: cannot write to") and "store/audio" in res.stderr


def test_a_seed_too_large_for_the_generators_is_refused_by_params(params_file):
    assert_clean_error(misr("params", "--params", params_file, "-S", "train.seeds=[100000000000000000000]"), "train.seeds.0", "4294967295")
    assert_clean_error(misr("params", "--params", params_file, "-S", "data.synth.seed=-1"), "data.synth.seed")
    assert misr("params", "--params", params_file, "-S", "train.seeds=[4294967295]").returncode == 0


def test_a_label_outside_the_convention_is_named_before_training(tmp_path, params_file):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = tmp_path / "store"
    assert misr("synth", "--params", params_file, "--out", store, "--n-train", 12, "--n-valid", 4, "--n-test", 4).returncode == 0
    clips = pq.read_table(store / "clips.parquet")
    labels = clips.column("label").to_pylist()
    row = clips.column("split").to_pylist().index("train")
    labels[row] = 50.0
    pq.write_table(
        clips.set_column(clips.schema.get_field_index("label"), "label", pa.array(labels, pa.float32())), store / "clips.parquet"
    )
    key = clips.column("clip_key")[row].as_py()
    res = misr(
        "train", store, "--out", tmp_path / "m", "--no-flow", "--params", params_file, "-S", "train.epochs=1", "-S", "data.dataset=synth"
    )
    assert_clean_error(res, "1 train clip(s)", "label outside [-3, 3]", f"{key} (50)")
    assert not (tmp_path / "m" / "summary.json").exists()
