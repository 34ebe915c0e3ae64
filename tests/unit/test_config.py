from pathlib import Path

import pytest
import yaml

from misr.config.compare import CompareConfig
from misr.config.dataset import dataset_entry
from misr.config.evaluate import EvaluateConfig
from misr.config.model import ModelConfig
from misr.config.params import Params, load_params, params_to_yaml
from misr.config.register import RegisterConfig
from misr.config.section import StageParams
from misr.config.train import TrainConfig
from misr.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def error_of(params_file: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_params(params_file, list(overrides))
    return str(info.value)


def test_repository_params_are_valid_and_round_trip():
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    # The printed YAML is itself a valid params file that resolves to the same values.
    again = Params.model_validate(yaml.safe_load(params_to_yaml(params)))
    assert again == params


def test_unknown_key_names_the_key_and_the_allowed_keys(params_file):
    msg = error_of(params_file, "model.invariance.wieght=2")
    assert "model.invariance.wieght: unknown key" in msg
    assert "kind, weight, warmup_epochs" in msg


def test_unknown_top_level_section(params_file):
    msg = error_of(params_file, "trian.lr=0.1")
    assert "trian: unknown key" in msg and "data, features, extract, model, train, evaluate, register" in msg


def test_wrong_choice_lists_allowed_values(params_file):
    msg = error_of(params_file, "model.invariance.kind=irmv2")
    assert "model.invariance.kind" in msg and "'irm' or 'vrex'" in msg and "irmv2" in msg


def test_out_of_range_and_wrong_type(params_file):
    assert "train.lr: must be greater than 0 (got -0.5)" in error_of(params_file, "train.lr=-0.5")
    assert "train.epochs" in error_of(params_file, "train.epochs=many")
    msg = error_of(params_file, "data.synth.splits.test.conflict_rate=1.5")
    assert "data.synth.splits.test.conflict_rate: must be less than or equal to 1" in msg


def test_cross_field_rules(params_file):
    assert "is not one of the configured datasets: synth, demo, mosi, mosei, sims" in error_of(params_file, "data.dataset=iemocap")
    assert "divisible by n_heads" in error_of(params_file, "model.d_model=30")
    assert "audio_frames" in error_of(params_file, "data.synth.audio_frames=[9, 3]")
    assert "label_step must divide 3" in error_of(params_file, "data.synth.label_step=0.7")


def test_every_problem_is_reported_at_once(params_file):
    msg = error_of(params_file, "train.lr=-1", "train.batch_size=0")
    assert "train.lr" in msg and "train.batch_size" in msg


def test_register_section_keeps_its_name(params_file):
    params = load_params(params_file, ["register.stage=staging"])
    assert params.registration.stage == "staging"
    assert "register:\n" in params_to_yaml(params)
    assert "register.bogus: unknown key; allowed here: artifact" in error_of(params_file, "register.bogus=1")


def test_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="no parameters file at"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_params(listy)


def test_override_syntax(params_file):
    params = load_params(params_file, ["train.seeds=[1, 2]", "model.dropout=0.25"])
    assert params.train.seeds == [1, 2] and params.model.dropout == 0.25
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_params(params_file, ["train.lr"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_params(params_file, ["train.lr.x=1"])


def test_non_finite_numbers_are_refused(params_file):
    err = error_of(params_file, "model.invariance.weight=.inf", "data.synth.modality_noise={text: .nan, audio: 1, visual: 1}")
    assert "model.invariance.weight: must be a finite number (got inf)" in err
    assert "data.synth.modality_noise.text: must be a finite number (got nan)" in err


def test_booleans_are_not_numbers(params_file):
    err = error_of(params_file, "train.epochs=true", "train.seeds=[false, 2]", "model.dropout=false")
    assert "train.epochs: must be a number, not true or false" in err
    assert "train.seeds: must be a number, not true or false" in err
    assert "model.dropout: must be a number, not true or false" in err
    assert load_params(params_file, ["train.deterministic=false"]).train.deterministic is False  # a real boolean


def test_duplicate_seeds_are_refused(params_file):
    assert "train.seeds: every seed must differ; 1 appear(s) more than once" in error_of(params_file, "train.seeds=[1, 2, 1]")


def test_a_key_given_twice_in_the_file_is_an_error(params_file):
    params_file.write_text(params_file.read_text() + "\ntrain:\n  epochs: 5\n")
    with pytest.raises(ConfigError, match=r"the key 'train' is given twice \(first on line \d+\)") as info:
        load_params(params_file)
    assert str(params_file) in str(info.value)


def test_an_execution_knob_left_under_features_says_where_it_moved(params_file):
    msg = error_of(params_file, "features.max_workers=4")
    assert "max_workers moved to the extract section (extract.max_workers)" in msg


def test_checkpoints_written_before_the_extract_section_still_load():
    from misr.config.features import FeaturesConfig
    from misr.config.model import ModelConfig
    from misr.config.train import TrainConfig
    from misr.msa.convention import MOSI
    from misr.training.checkpoints import RunSettings

    now = RunSettings(ModelConfig(), TrainConfig(), FeaturesConfig(), MOSI)
    old = yaml.safe_load(now.to_yaml())
    old["features"].update(shard_size=16, runner="threads", max_workers=2, dask_address=None, strict=False)
    assert RunSettings.from_yaml(yaml.safe_dump(old), "best.pt") == now


def stage_error(params: StageParams, key: str, model: type) -> str:
    with pytest.raises(ConfigError) as info:
        params.section(key, model)
    return str(info.value)


def test_a_stage_validates_the_sections_it_reads_and_no_other(tmp_path):
    """A stage reads its own sections: a broken section it does not read neither stops it nor (through the
    import of its model) re-runs it; the CLI, which reads the whole file, still refuses it."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["compare"] = {"models": ["misr", "nope"]}
    raw["model"]["invariance"]["wieght"] = 2
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    params = StageParams(path)
    assert params.section("register", RegisterConfig).metric == raw["register"]["metric"]
    assert params.section("train", TrainConfig).seeds == raw["train"]["seeds"]
    msg = stage_error(params, "model", ModelConfig)
    assert "model.invariance.wieght: unknown key" in msg and "kind, weight, warmup_epochs" in msg
    assert "compare.models" in stage_error(params, "compare", CompareConfig)
    with pytest.raises(ConfigError, match="compare.models"):
        load_params(path)


def test_a_section_left_out_takes_its_defaults_and_a_value_is_no_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  datasets:\n    mine: {source: synth}\nevaluate: 3\n")
    params = StageParams(path)
    assert params.section("train", TrainConfig) == TrainConfig()
    assert "evaluate" in stage_error(params, "evaluate", EvaluateConfig)


def test_a_stage_finds_its_data_set_with_default_folders(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  dataset: mine\n  datasets:\n    mine: {source: synth}\n    other: {source: raw, raw_dir: r}\n")
    name, entry = dataset_entry(StageParams(path))
    assert name == "mine" and entry.features_dir == Path("data/features/mine") and entry.eval_dir == Path("data/eval/mine")
    assert dataset_entry(StageParams(path), "other")[1].raw_dir == Path("r")
    with pytest.raises(ConfigError, match="'nope' is not one of the configured datasets: mine, other"):
        dataset_entry(StageParams(path), "nope")
    path.write_text("data:\n  datasets:\n    mine: {source: raw}\n")
    with pytest.raises(ConfigError, match="raw_dir is required"):
        dataset_entry(StageParams(path), "mine")
    # the whole file's validation gives the same folders
    path.write_text("data:\n  dataset: mine\n  datasets:\n    mine: {source: synth}\nretrain: {dataset: mine}\n")
    assert load_params(path).data.active == dataset_entry(StageParams(path))[1]
