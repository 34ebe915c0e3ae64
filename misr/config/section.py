"""What every section of params.yaml shares: a strict pydantic base, one-line errors, the file's reading.

Each section has a module of its own (`misr.config.<section>`), so a stage imports, and DVC tracks, only the
sections it reads: a new field of `compare` re-runs no training. This package's `__init__` imports nothing.
`StageParams` reads params.yaml once and validates a section when a stage asks for it; `misr.config.params`
validates the whole file (the CLI).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from misr.errors import ConfigError

# numpy's generators take seeds below 2**32; a larger one would pass here and overflow in training
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]

DEFAULT_PARAMS = Path("params.yaml")
SPLITS = ("train", "valid", "test")


class Section(BaseModel):
    # Non-finite numbers (.inf, .nan) are refused everywhere: no setting means "infinitely".
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for a number; in a params file that is always a mistake
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _wants_number(field.annotation) and _holds_bool(value):
            raise ValueError("must be a number, not true or false")
        return value


SectionT = TypeVar("SectionT", bound=BaseModel)


def _wants_number(annotation: Any) -> bool:
    """Whether a field's type holds numbers (int or float, also inside lists, tuples and dicts)."""
    if annotation in (int, float):
        return True
    return any(_wants_number(arg) for arg in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return False


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (not "the last wins")."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_params(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """params.yaml as a mapping of sections, with overrides (`key.path=value`, values parsed as YAML) applied."""
    path = Path(path) if path is not None else DEFAULT_PARAMS
    if not path.exists():
        raise ConfigError(
            f"no parameters file at {path}",
            hint="run from the repository root, or pass --params PATH",
        )
    try:
        with open(path, encoding="utf-8") as fh:  # a stream, so that YAML's messages name the file
            raw = yaml.load(fh, Loader=UniqueKeyLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, features, model, ...)")
    for item in overrides:
        apply_override(raw, item)
    return raw


def validate_section(model: type[SectionT], raw: Any, source: str, key: str = "") -> SectionT:
    """One section on its own (a stage's, or the settings stored in a checkpoint), with one line per problem;
    `key` is where the section lies in params.yaml (`model`, `data.datasets.demo`), for the messages."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [format_error(err, model, key) for err in exc.errors()]
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  - {line}" for line in lines)) from None


def subsection(raw: dict[str, Any], key: str, source: str) -> Any:
    """The value at a dotted key of the raw file ({} where it is absent: every section has defaults)."""
    node: Any = raw
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, dict):
            raise ConfigError(f"{source} is invalid:\n  - {'.'.join(key.split('.')[:i])}: must be a section, not {node!r}")
        node = node.get(part, {})
    return node


class StageParams:
    """params.yaml read once; each section validated when asked for, so a stage checks (and depends on) only
    the sections it reads."""

    def __init__(self, path: str | Path | None = None, overrides: Sequence[str] = ()) -> None:
        self.source = str(path if path is not None else DEFAULT_PARAMS)
        self.raw = read_params(path, overrides)

    def section(self, key: str, model: type[SectionT]) -> SectionT:
        return validate_section(model, subsection(self.raw, key, self.source), self.source, key)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set `a.b.c=value` inside the nested mapping `raw` (value parsed as YAML, like `dvc exp run -S`)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def format_error(err: dict[str, Any], root: type[BaseModel], prefix: str = "") -> str:
    """One line per problem: the dotted key, what is wrong, the allowed keys or values, and what was given."""
    loc = [*prefix.split("."), *map(str, err["loc"])] if prefix else [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, err["loc"][:-1])
        return f"{key}: unknown key; allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind.startswith("literal_error") or kind == "enum":
        msg = msg.replace("Input should be", "must be one of:")
    else:
        msg = msg.replace("Input should be", "must be")
    given = err.get("input")
    if kind not in {"value_error", "assertion_error"} and not isinstance(given, dict):
        return f"{key}: {msg} (got {given!r})"
    return f"{key}: {msg}"


def _allowed_keys(root: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The field names of the section at `loc` (a path into `root`), for error messages."""
    model: Any = root
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            by_key = {(f.alias or name): f for name, f in model.model_fields.items()}
            field = by_key.get(str(part))
            if field is None:
                return []
            model = _unwrap(field.annotation)
        elif typing.get_origin(model) is dict:
            model = _unwrap(typing.get_args(model)[1])
        else:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X, so that error messages can look inside optional sections."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation
