"""The layout's rules: the library never imports the application layer, and every DVC stage declares
exactly the code and params its command reads (so `dvc repro` never leaves a stale result standing)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from misr.config.compare import CompareConfig
from misr.config.data import DataConfig
from misr.config.dataset import DatasetConfig
from misr.config.democorpus import DemoCorpusConfig
from misr.config.evaluate import EvaluateConfig
from misr.config.extract import ExtractConfig
from misr.config.features import FeaturesConfig
from misr.config.model import ModelConfig
from misr.config.params import Params, load_params
from misr.config.register import RegisterConfig
from misr.config.retrain import RetrainConfig
from misr.config.synth import SynthConfig
from misr.config.train import TrainConfig
from misr.msa.convention import Convention
from tests.helpers import REPO
from tests.helpers.imports import closure, module_file, module_name, project_imports, third_party_imports

APPLICATION = {"typer", "rich", "prefect", "prefect_dask", "pipelines"}
# What a stage function's typed argument reads from params.yaml ({item}: the data set of the stage).
# None: read, but it cannot change what the stage writes (how extraction runs), so no stage declares it.
SECTION_KEYS = {
    ExtractConfig: None,
    ModelConfig: "model",
    TrainConfig: "train",
    FeaturesConfig: "features",
    EvaluateConfig: "evaluate",
    RegisterConfig: "register",
    SynthConfig: "data.synth",
    DemoCorpusConfig: "data.demo_corpus",
    DatasetConfig: "data.datasets.{item}",
    Convention: "data.datasets.{item}.convention",
    CompareConfig: "compare",
}


def stages() -> list[tuple[str, str, dict]]:
    """(name, data set, stage) for every stage of dvc.yaml, foreach expanded as DVC does."""
    out = []
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        if "foreach" not in stage:
            words = shlex.split(stage["cmd"])
            item = words[words.index("--dataset") + 1] if "--dataset" in words else None
            out.append((name, item, stage))
            continue
        items = stage["foreach"]
        for key, value in items.items() if isinstance(items, dict) else ((i, i) for i in items):
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(key)).replace("${key}", str(key))
            if isinstance(value, dict):
                for k, v in value.items():
                    text = text.replace("${item." + k + "}", str(v))
            out.append((f"{name}@{key}", key, yaml.safe_load(text)))
    return out


STAGES = stages()


def command_module(cmd: str) -> Path:
    """The file of the module a stage runs (`python -m <module> ...`)."""
    words = shlex.split(cmd)
    assert words[:2] == ["python", "-m"], f"a stage runs its own module (python -m misr.stages.<stage>), not {cmd!r}"
    return module_file(words[2])


def stage_module(stage: dict) -> object:
    """The misr.stages module whose run() a stage's command calls (a flow's module calls the stage of its name)."""
    return __import__("misr.stages." + module_name(command_module(stage["cmd"])).split(".")[-1], fromlist=["run"])


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def test_the_library_never_imports_the_application_layer():
    offenders = {
        str(p.relative_to(REPO)): sorted(third_party_imports(p) & APPLICATION)
        for p in sorted((REPO / "misr").rglob("*.py"))
        if third_party_imports(p) & APPLICATION
    }
    assert offenders == {}


# The library's floors, lowest first. A module may import its own package and packages on lower floors,
# never one on its own floor or above: conventions and metrics (msa) and the shipped models' locations
# sit low because data, training and evaluation all use them.
FLOORS = [
    ("misr", "misr.errors"),
    ("misr.util", "misr.config", "misr.msa", "misr.shipped"),
    ("misr.store",),
    ("misr.data",),
    ("misr.features", "misr.model"),
    ("misr.training",),
    ("misr.evaluation",),
    ("misr.registry", "misr.compare"),
    ("misr.predict", "misr.stages"),
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}


def unit_of(path: Path) -> str:
    name = module_name(path)
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def library_files() -> list[Path]:
    return sorted((REPO / "misr").rglob("*.py"))


def test_every_library_package_has_a_floor():
    assert sorted({unit_of(p) for p in library_files()} - set(FLOOR)) == []


def test_no_import_runs_up_the_floors():
    upward = []
    for path in library_files():
        unit = unit_of(path)
        for target in project_imports(path):
            other = unit_of(target)
            if other != unit and FLOOR[other] >= FLOOR[unit]:
                upward.append(f"{path.relative_to(REPO)} -> {target.relative_to(REPO)}")
    assert upward == []


def test_no_files_import_each_other_even_through_others():
    graph = {p: project_imports(p) for p in library_files()}
    cycles = [sorted(str(p.relative_to(REPO)) for p in component) for component in strongly_connected(graph) if len(component) > 1]
    assert cycles == []


def strongly_connected(graph: dict[Path, set[Path]]) -> list[set[Path]]:
    """Tarjan's components of a directed graph (iterative, so a deep chain cannot overflow the stack)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    out: list[set[Path]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out


def test_the_cycle_finder_finds_cycles():
    a, b, c, d = (Path(x) for x in "abcd")
    found = [sorted(map(str, comp)) for comp in strongly_connected({a: {b}, b: {c}, c: {a}, d: {a}}) if len(comp) > 1]
    assert found == [["a", "b", "c"]]


def test_the_import_follower_finds_what_a_module_needs():
    files = {str(p.relative_to(REPO)) for p in closure(module_file("misr.stages.train"))}
    assert {"misr/training/loop.py", "misr/model/misr.py", "misr/store/read.py", "misr/__init__.py"} <= files
    assert "misr/evaluation/plots.py" not in files and "pipelines/cli/main.py" not in files
    # the registry's "module:Class" strings count as imports
    assert "misr/features/visual.py" in {str(p.relative_to(REPO)) for p in closure(module_file("misr.features.registry"))}


@pytest.mark.parametrize("name,item,stage", STAGES, ids=[s[0] for s in STAGES])
def test_a_stage_declares_every_project_file_its_command_imports(name, item, stage):
    deps = [d for d in stage.get("deps", []) if not d.startswith("data/")]
    needed = closure(command_module(stage["cmd"]))
    missing = sorted(str(p.relative_to(REPO)) for p in needed if not covered(p, deps))
    assert missing == [], f"{name} imports files its deps do not list: {missing}"
    unused = [d for d in deps if not any(covered(p, [d]) for p in needed)]
    assert unused == [], f"{name} lists deps its command never imports: {unused}"


def test_a_stage_runs_its_own_module_never_the_cli():
    for name, _, stage in STAGES:
        module = module_name(command_module(stage["cmd"]))
        assert module in (f"misr.stages.{name.split('@')[0]}", f"pipelines.{name.split('@')[0]}"), (name, module)
        assert "pipelines/cli" not in {str(p.relative_to(REPO).parent) for p in closure(command_module(stage["cmd"]))}


def from_command(module: object, cmd: str) -> set[str]:
    """The keys a flag of the stage's command sets (FROM_COMMAND: key -> flag), which it does not read from the file."""
    words = shlex.split(cmd)
    return {key for key, flag in getattr(module, "FROM_COMMAND", {}).items() if flag in words}


def keys_read(module: object, item: str | None, cmd: str) -> set[str]:
    """The params.yaml keys a stage's run() reads and that can change its outputs, one per field of each section
    it takes (a key its command sets is not read from the file)."""
    keys = set()
    for t in typing.get_type_hints(module.run).values():
        if SECTION_KEYS.get(t) is None:
            continue
        key = SECTION_KEYS[t].format(item=item)
        fields = getattr(t, "model_fields", None)
        keys |= {f"{key}.{f}" for f in fields} if fields else {key}
    return keys - from_command(module, cmd)


def under(key: str, declared: str) -> bool:
    return key == declared or key.startswith(declared + ".")


def check_params(name: str, module: object, item: str | None, stage: dict) -> None:
    wanted = keys_read(module, item, stage["cmd"])
    declared = set(stage.get("params", []))
    uncovered = sorted(w for w in wanted if not any(under(w, d) for d in declared))
    assert uncovered == [], f"{name}: its run() reads {uncovered} but dvc.yaml does not declare them"
    extra = sorted(d for d in declared if not any(under(w, d) or under(d, w) for w in wanted))
    assert extra == [], f"{name}: dvc.yaml declares params its run() never takes: {extra}"
    set_by_flag = [(d, k) for d in declared for k in from_command(module, stage["cmd"]) if under(k, d)]
    assert set_by_flag == [], f"{name}: declares keys its command sets (a change to them would re-run it for nothing)"


@pytest.mark.parametrize("name,item,stage", STAGES, ids=[s[0] for s in STAGES])
def test_a_stage_declares_the_params_its_function_takes(name, item, stage):
    check_params(name, __import__(f"misr.stages.{name.split('@')[0]}", fromlist=["run"]), item, stage)


def test_editing_the_model_leaves_extraction_standing():
    extract = next(stage for name, _, stage in STAGES if name == "extract")
    assert not covered(REPO / "misr" / "model" / "misr.py", extract["deps"])
    assert not covered(REPO / "misr" / "training" / "loop.py", extract["deps"])


def test_extraction_imports_no_reader_and_no_model():
    """Adding a reader's helper (`to_numpy`) once re-ran every extraction, through the store's one class."""
    extract = next(stage for name, _, stage in STAGES if name == "extract")
    needed = {str(p.relative_to(REPO)) for p in closure(command_module(extract["cmd"]))}
    assert not [p for p in needed if p in ("misr/store/read.py", "misr/store/store.py", "misr/store/stream.py")]
    assert not [p for p in needed if p.startswith(("misr/model/", "misr/training/"))]
    assert not [d for d in extract["deps"] if d.startswith(("misr/store/read", "misr/model"))]


ALL_SECTIONS = [*SECTION_KEYS, DataConfig, RetrainConfig, Params]


def section_files(types_: typing.Iterable[type]) -> set[Path]:
    """The files of misr.config that define these sections, with what those files import."""
    return {p for t in types_ for p in closure(module_file(t.__module__)) if "misr/config" in str(p)}


def main_and_compare_stages() -> list[tuple[str, str, dict]]:
    compare = yaml.safe_load((REPO / "compare" / "dvc.yaml").read_text())["stages"]
    return [*STAGES, *((name, "synth", stage) for name, stage in compare.items())]


@pytest.mark.parametrize("name,item,stage", main_and_compare_stages(), ids=[s[0] for s in main_and_compare_stages()])
def test_a_stage_imports_the_config_of_its_own_sections_only(name, item, stage):
    """One module per section: adding a field to `compare` once re-ran all eight stages of the main pipeline."""
    module = stage_module(stage)
    files = closure(command_module(stage["cmd"]))
    read = set(typing.get_type_hints(module.run).values()) | {DatasetConfig}  # every stage reads its data set's entry
    if REPO / "misr" / "training" / "checkpoints.py" in files:  # it reads a model, whose checkpoints carry settings
        from misr.training.checkpoints import RunSettings

        read |= set(typing.get_type_hints(RunSettings).values())
    others = section_files(ALL_SECTIONS) - section_files(t for t in read if t in ALL_SECTIONS)
    assert sorted(str(p.relative_to(REPO)) for p in others & files) == []


def test_no_stage_of_the_main_pipeline_depends_on_the_compare_section():
    compare = module_file(CompareConfig.__module__)
    assert [name for name, _, stage in STAGES if covered(compare, stage["deps"])] == []


def test_no_stage_declares_how_extraction_runs():
    declared = {d for _, _, stage in STAGES for d in stage.get("params", [])}
    assert [d for d in declared if d == "extract" or d.startswith("extract.")] == []
    assert set(ExtractConfig.model_fields).isdisjoint(FeaturesConfig.model_fields)


@pytest.mark.parametrize("name,item,stage", STAGES, ids=[s[0] for s in STAGES])
def test_stage_paths_are_the_data_sets_paths_in_params(name, item, stage):
    datasets = load_params(REPO / "params.yaml").data.datasets
    in_cmd = [a for a in shlex.split(stage["cmd"]) if a.startswith("data/")]
    if item is None:  # a stage without --dataset (synth): the data set whose folder it writes
        item = next(n for n, ds in datasets.items() if str(ds.features_dir) in in_cmd)
    ds = datasets[item]
    allowed = {str(p) for p in (ds.raw_dir, ds.features_dir, ds.models_dir, ds.eval_dir) if p is not None}
    assert in_cmd and all(a in allowed for a in in_cmd), (in_cmd, allowed)
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", []) + stage.get("metrics", [])]
    assert all(any(o == a or o.startswith(a + "/") for a in allowed) for o in outs), (outs, allowed)


def stale_results(status: dict) -> list[str]:
    """What `dvc status --json` says changed in code, params or commands (missing data is allowed)."""
    stale = []
    for stage, items in status.items():
        for item in items:
            if item == "changed command":
                stale.append(f"{stage}: its command changed")
            if not isinstance(item, dict):
                continue
            for path, change in item.get("changed deps", {}).items():
                if isinstance(change, dict):  # a params file: {key: modified | new | deleted}
                    stale += [f"{stage}: {path} {key} {how}" for key, how in change.items()]
                elif not path.startswith("data/"):
                    stale.append(f"{stage}: {path} {change}")
    return stale


def test_stale_results_are_told_apart_from_missing_data():
    status = {
        "train@demo": [
            {"changed deps": {"data/features/demo": "deleted", "misr/model": "modified"}},
            {"changed outs": {"data/models/demo": "deleted"}},
        ],
        "evaluate@demo": [{"changed deps": {"params.yaml": {"evaluate.robustness": "modified"}}}, "changed command"],
        "synth": [{"changed deps": {"data/x": "modified"}}],
    }
    assert stale_results(status) == [
        "train@demo: misr/model modified",
        "evaluate@demo: params.yaml evaluate.robustness modified",
        "evaluate@demo: its command changed",
    ]


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="needs the git checkout")
def test_the_committed_results_are_those_of_the_committed_code():
    """dvc.lock (and so the committed metrics and cards) must describe the code and params beside it.

    After changing code or params a stage depends on, re-run the pipeline (`dvc repro`) and commit its outputs.
    The main pipeline only: benchmarks/quality/dvc.yaml records the search as it was run, on the code of then.
    """
    res = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "dvc.yaml", "--json"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert stale_results(json.loads(res.stdout or "{}")) == []


def test_the_quality_search_declares_every_project_file_its_script_imports():
    stage = yaml.safe_load((REPO / "benchmarks" / "quality" / "dvc.yaml").read_text())["stages"]["select"]
    assert stage["wdir"] == "../.." and stage["cmd"].startswith("python benchmarks/quality.py select")
    needed = closure(REPO / "benchmarks" / "quality.py")
    assert [str(p.relative_to(REPO)) for p in needed if not covered(p, stage["deps"])] == []
    assert [d for d in stage["deps"] if not any(covered(p, [d]) for p in needed)] == []


# the data seeds of benchmarks/quality.py: settings were chosen on the first, the second's test read for a report
QUALITY_SEEDS = {
    int(x)
    for name in ("SELECTION_SEEDS", "REPORT_DATA_SEEDS")
    for x in re.search(rf"^{name} = \[([0-9, ]+)\]", (REPO / "benchmarks" / "quality.py").read_text(), re.M).group(1).split(",")
}
COMPARE_STAGES = yaml.safe_load((REPO / "compare" / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", list(COMPARE_STAGES))
def test_the_compare_pipeline_declares_every_project_file_and_param_it_reads(name):
    """compare/dvc.yaml (outside the main pipeline: a held-out store, then the comparison) follows its rules."""
    stage = COMPARE_STAGES[name]
    module = __import__(module_name(command_module(stage["cmd"])), fromlist=["run"])
    assert stage["wdir"] == ".." and module.__name__.startswith("misr.stages.")
    deps = [d for d in stage["deps"] if not d.startswith(("data/", "compare/"))]
    needed = closure(command_module(stage["cmd"]))
    assert [str(p.relative_to(REPO)) for p in needed if not covered(p, deps)] == []
    assert [d for d in deps if not any(covered(p, [d]) for p in needed)] == []
    assert "pipelines/cli" not in {str(p.relative_to(REPO).parent) for p in needed}
    check_params(name, module, "synth", stage)


def test_the_headline_comparison_runs_on_a_store_no_setting_was_chosen_on():
    """It once ran on data/features/synth, the store MISR's settings were chosen on (its test is no test)."""
    store, compare = COMPARE_STAGES["store"], COMPARE_STAGES["compare"]
    words = shlex.split(store["cmd"])
    seed = int(words[words.index("--seed") + 1])
    chosen_on = {load_params(REPO / "params.yaml").data.synth.seed, *QUALITY_SEEDS}
    assert seed not in chosen_on
    out = store["outs"][0]
    assert shlex.split(compare["cmd"])[3] == out and out in compare["deps"] and "data/features/synth" not in compare["deps"]


@pytest.mark.parametrize("module", ["pipelines.extract", "pipelines.train", "misr.stages.register", "misr.stages.synth"])
def test_a_stage_started_bare_runs_offline_and_without_analytics(module):
    """The defaults once lived in the CLI's package, which stages no longer import: a plain `dvc repro` ran the
    flows without the Prefect start-up timeout and with analytics on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_SERVER", "DVC_NO", "HF_HUB", "TRANSFORMERS"))}
    names = ["DVC_NO_ANALYTICS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"]
    if module.startswith("pipelines."):
        names += ["PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
    code = f"import os, {module}; print(' '.join(os.environ.get(n, '-') for n in {names!r}))"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["1", "1", "1", "false", "120"][: len(names)]


def test_registration_reads_no_feature_store():
    """register reads two JSON files; through the card's builder it once depended on the whole store (1,136
    lines), so a change to the store's reader re-ran every registration."""
    needed = {str(p.relative_to(REPO)) for p in closure(module_file("misr.stages.register"))}
    assert not [p for p in needed if p.startswith(("misr/store/", "misr/model/", "misr/training/"))], sorted(needed)
