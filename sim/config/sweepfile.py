"""Sweep files: a base scenario, factors over its keys, replications and a root seed -> a plan.

A sweep file (YAML) names a base scenario (a path relative to the sweep
file), fixed ``set`` overrides, ``factors`` (dotted scenario keys, each with a
list of values; the full grid is their product, last factor fastest), an
optional ``filter`` (see :mod:`sim.config.filters`), ``replications``, the root
``seed`` and optionally the ``strategies`` to compare.  :func:`load_sweep`
reads it with line numbers, builds every grid point as the base scenario with
the factor values applied as overrides, re-validates each one as a
:class:`~sim.config.scenario.Scenario`, and turns the first problem into one
:class:`InputError` line ``FILE:LINE: key.path: message``: a bad factor key or
value names the sweep file, the factor and the value, not the scenario file.

Points keep their index in the full grid even when the filter drops some, so
a point's seeds (from root seed, point index, replication) do not change when
the filter does.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sim.config.filters import FilterError, keeps, parse_filter
from sim.config.paths import (
    PathError,
    apply_override,
    describe_error,
    dotted,
    explained_errors,
    parse_override,
    show_value,
)
from sim.config.scenario import EXTENSION_PREFIX, Scenario, load_scenario, resolve_machine_files
from sim.config.yamlpos import RAW_TEXT_PATHS, Loc, line_of, read_yaml
from sim.schema.errors import InputError
from sim.schema.input_model import InputModel
from sim.schema.limits import MAX_RUNS, runs_limit_message

# scenario keys that the sweep sets through its own keys, or that a sweep cannot vary
_OWN_KEYS = {"strategies": "strategies", "replications": "replications", "seed": "seed"}
_FIXED_KEYS = ("name", "description")


class SweepFile(InputModel):
    """The schema of a sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="vmsim sweep")

    name: str = Field("sweep", min_length=1, description="default: the file's stem")
    description: str = ""
    scenario: str = Field(min_length=1, description="base scenario, relative to the sweep file")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value, applied to every point")
    factors: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values; full grid")
    filter: str | None = Field(None, description='keep the points where this holds, e.g. "not (a == 1 and b == 2)"')
    replications: int | None = Field(None, ge=1, description="default: the base scenario's")
    seed: int | None = Field(None, ge=0, description="root seed; default: the base scenario's")
    strategies: list[str] | None = Field(None, min_length=1, description="default: the base scenario's")


@dataclass(frozen=True)
class Point:
    """One grid point: its index in the full grid, its factor values as written, what they resolve to."""

    index: int
    values: dict[str, Any]
    columns: dict[str, Any]  # the values as runs.parquet columns (one type per factor)
    scenario_hash: str
    kernel: str


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: (point, strategy, replication) and its id."""

    run_id: str
    point: int
    strategy: str
    replication: int


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep runs, resolved and validated; small and picklable."""

    source: str
    name: str
    description: str
    scenario_path: str
    base: Scenario  # the base scenario with ``set``, strategies and replications applied
    base_data: dict[str, Any]  # the data it was validated from (overrides go on top of a copy)
    factors: dict[str, list[Any]]
    filter: str | None
    points: tuple[Point, ...]
    strategies: tuple[str, ...]
    replications: int
    seed: int
    set: dict[str, Any] = field(default_factory=dict)
    cli_set: tuple[str, ...] = ()  # the command line's --set KEY=VALUE, after the file's set

    def overrides(self, point: Point) -> list[tuple[Loc, Any]]:
        """The (key path, value) overrides that turn the base into ``point``."""
        return [(key_loc(key), value) for key, value in point.values.items()]

    def scenario(self, point: Point) -> Scenario:
        """The validated scenario of ``point``."""
        return Scenario.model_validate(point_data(self.base_data, self.overrides(point)))

    def runs(self) -> list[RunSpec]:
        """Every run, sorted by run id (the order of chunks and of the merged tables)."""
        from sim.record.results import run_id_of

        specs = [
            RunSpec(run_id_of(self.base.name, strategy, p.index, k), p.index, strategy, k)
            for p in self.points
            for strategy in self.strategies
            for k in range(self.replications)
        ]
        return sorted(specs, key=lambda spec: spec.run_id)


def key_loc(key: str) -> Loc:
    """``workloads.0.workers`` -> ('workloads', 0, 'workers')."""
    return tuple(int(part) if part.isdigit() else part for part in key.split("."))


def point_data(base_data: dict[str, Any], overrides: list[tuple[Loc, Any]]) -> dict[str, Any]:
    """A copy of ``base_data`` with ``overrides`` applied (paths checked against the schema)."""
    data = copy.deepcopy(base_data)
    for loc, value in overrides:
        apply_override(Scenario, data, loc, value)
    return data


def is_sweep_data(data: Any) -> bool:
    """Whether a YAML document is a sweep file rather than a scenario: it names a base
    ``scenario`` or has ``factors``, and no ``workloads``."""
    return isinstance(data, dict) and ("scenario" in data or "factors" in data) and "workloads" not in data


def load_sweep(path: str | Path, overrides: Sequence[str] = (), max_runs: int = MAX_RUNS) -> SweepPlan:
    """Read and validate the sweep file at ``path`` and every point of its grid; ``overrides``
    (``--set key.path=value`` strings) apply to the base scenario after the file's own ``set``,
    ``replications``, ``seed`` and ``strategies``, e.g. ``duration=1s`` to shorten a shipped sweep.
    A grid of more than ``max_runs`` runs is refused before any point is built."""
    path = Path(path)
    source = str(path)
    doc = read_yaml(path)
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else show_value(doc.data)
        keys = ", ".join(SweepFile.model_fields)
        raise InputError(source, line_of(doc.root, ()) or 1, f"expected a mapping of sweep keys ({keys}), got {got}")
    data = doc.data
    data.setdefault("name", path.stem)
    _keep_raw_versions(data, doc.root)
    try:
        spec = SweepFile.model_validate(data)
    except ValidationError as err:
        error = explained_errors(err.errors())[0]
        loc, message = describe_error(error, data, SweepFile)
        raise InputError(source, line_of(doc.root, loc), f"{dotted(loc)}: {message}") from None
    at = _Locator(source, doc.root)
    base_path = (path.parent / spec.scenario) if not Path(spec.scenario).is_absolute() else Path(spec.scenario)
    if not base_path.is_file():
        at.fail(("scenario",), f"no scenario file {str(base_path)!r}")
    load_scenario(base_path)  # errors of the base file itself name the base file
    base_data = _base_data(base_path)
    _check_keys(spec, at)
    own = {"strategies": spec.strategies, "replications": spec.replications, "seed": spec.seed}
    fixed = [(("set", key), key_loc(key), value) for key, value in spec.set.items()]
    fixed += [((key,), (key,), value) for key, value in own.items() if value is not None]
    for where, loc, value in fixed:
        try:
            apply_override(Scenario, base_data, loc, value)
        except PathError as err:
            at.fail(where, str(err))
    blame = [(where, loc) for where, loc, _ in fixed]
    base = _validate(base_data, blame, at, ("set",) if spec.set else ("scenario",), "")
    if overrides:
        base = _apply_cli_sets(base_data, overrides, spec)
    factors = {key: list(values) for key, values in spec.factors.items()}
    grid = math.prod(len(values) for values in factors.values())
    runs = grid * len(base.strategies) * base.replications
    if runs > max_runs:
        what = f"{grid:,} grid points x {len(base.strategies)} strategies x {base.replications} replications"
        at.fail(("factors",) if factors else ("replications",), runs_limit_message(what, runs, max_runs))
    points = _grid(spec, factors, base_data, at)
    return SweepPlan(
        source=source,
        name=spec.name,
        description=spec.description,
        scenario_path=str(base_path),
        base=base,
        base_data=base_data,
        factors=factors,
        filter=spec.filter,
        points=tuple(points),
        strategies=tuple(base.strategies),
        replications=base.replications,
        seed=base.seed,
        set=dict(spec.set),
        cli_set=tuple(overrides),
    )


def _apply_cli_sets(base_data: dict[str, Any], overrides: Sequence[str], spec: SweepFile) -> Scenario:
    """Apply command-line ``--set`` strings to ``base_data`` and validate it; an error names
    the option (``--set KEY=VALUE: message``).  A key that a factor sweeps cannot be fixed."""
    for text in overrides:
        try:
            loc, value = parse_override(text)
            if loc[0] in _FIXED_KEYS:
                raise PathError(f"{loc[0]} names the base scenario and cannot be set by a sweep")
            for key in spec.factors:
                factor = key_loc(key)
                if loc[: len(factor)] == factor or factor[: len(loc)] == loc:
                    raise PathError(f"overlaps factor {key} of the sweep; change the sweep file instead")
            apply_override(Scenario, base_data, loc, value)
        except ValueError as err:
            raise InputError(f"--set {text}", None, str(err)) from None
    try:
        return Scenario.model_validate(base_data)
    except ValidationError as err:
        loc, message = describe_error(err.errors()[0], base_data, Scenario)
        raise InputError("--set " + " ".join(overrides), None, f"{dotted(loc)}: {message}") from None


class _Locator:
    """Turns a key path of the sweep file into ``FILE:LINE: key.path: message``."""

    def __init__(self, source: str, root: Node | None) -> None:
        self.source, self.root = source, root

    def error(self, loc: Loc, message: str) -> InputError:
        """A factor's value is named ``factors.KEY[i]`` (its key has dots of its own)."""
        where = f"factors.{loc[1]}[{loc[2]}]" if loc[:1] == ("factors",) and len(loc) == 3 else dotted(loc)
        return InputError(self.source, line_of(self.root, loc), f"{where}: {message}")

    def fail(self, loc: Loc, message: str) -> None:
        raise self.error(loc, message)


def _base_data(path: Path) -> dict[str, Any]:
    """The base scenario's data as load_scenario validates it (x- keys dropped, name defaulted)."""
    data = read_yaml(path).data
    for key in [k for k in data if isinstance(k, str) and k.startswith(EXTENSION_PREFIX)]:
        del data[key]
    data.setdefault("name", path.stem)
    resolve_machine_files(data, path.parent)
    return data


def _check_keys(spec: SweepFile, at: _Locator) -> None:
    """Factor and set keys: well formed, not the sweep's own keys, not overlapping one another."""
    seen: dict[Loc, tuple[str, str]] = {}
    for section, keys in (("set", spec.set), ("factors", spec.factors)):
        for key in keys:
            where = (section, key)
            if any(part == "" for part in key.split(".")):
                at.fail(where, f"empty key in {key!r}")
            loc = key_loc(key)
            if loc[0] in _OWN_KEYS:
                at.fail(where, f"set {loc[0]} with the sweep's own key '{_OWN_KEYS[loc[0]]}'")
            if loc[0] in _FIXED_KEYS:
                at.fail(where, f"{loc[0]} names the base scenario and cannot be set by a sweep")
            for other, (other_section, other_key) in seen.items():
                if loc[: len(other)] == other or other[: len(loc)] == loc:
                    at.fail(where, f"overlaps {other_section}.{other_key}")
            seen[loc] = (section, key)


def _validate(
    data: dict[str, Any], overrides: list[tuple[Loc, Loc]], at: _Locator, where: Loc, prefix: str
) -> Scenario:
    """``data`` as a Scenario; the first error is blamed on the override whose path covers it
    (a line of the sweep file), else on ``where`` with ``prefix`` (the point as a whole)."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        loc, message = describe_error(explained_errors(err.errors())[0], data, Scenario)
        for blamed, over in overrides:
            if loc[: len(over)] == over:
                if blamed[0] == "factors":  # name the factor's value, as written
                    raise at.error(blamed, f"value {_show(_value_at(data, over))}: {message}") from None
                raise at.error(blamed + loc[len(over) :], message) from None
        raise at.error(where, f"{prefix}{dotted(loc)}: {message}") from None


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def _grid(spec: SweepFile, factors: dict[str, list[Any]], base_data: dict[str, Any], at: _Locator) -> list[Point]:
    """Every point of the full grid that the filter keeps, each applied and validated."""
    keys = list(factors)
    tree = None
    if spec.filter is not None:
        try:
            tree = parse_filter(spec.filter, keys)
        except FilterError as err:
            at.fail(("filter",), str(err))
    for key, values in factors.items():
        if not values:
            at.fail(("factors", key), "needs at least one value")
        shown = [repr(v) for v in values]
        for i, text in enumerate(shown):
            if text in shown[:i]:
                at.fail(("factors", key, i), f"value {_show(values[i])} is listed twice")
    columns = {key: _column_values(values) for key, values in factors.items()}
    points = []
    combos = itertools.product(*(range(len(v)) for v in factors.values()))
    for index, picks in enumerate(combos):
        values = {key: factors[key][i] for key, i in zip(keys, picks)}
        if tree is not None:
            try:
                if not keeps(tree, values):
                    continue
            except FilterError as err:
                at.fail(("filter",), str(err))
        overrides = [(("factors", key, i), key_loc(key), values[key]) for key, i in zip(keys, picks)]
        data = copy.deepcopy(base_data)
        for where, loc, value in overrides:
            try:
                apply_override(Scenario, data, loc, value)
            except PathError as err:
                at.fail(where[:2], str(err))
        label = f"point {index} (" + ", ".join(f"{k}={show_value(v)}" for k, v in values.items()) + ")"
        scenario = _validate(data, [(w, loc) for w, loc, _ in overrides], at, ("factors",), f"{label}: ")
        cols = {key: columns[key][i] for key, i in zip(keys, picks)}
        points.append(Point(index, values, cols, scenario.scenario_hash(), scenario.kernel))
    if not points:
        at.fail(("filter",) if tree is not None else ("factors",), "no point of the grid is left to run")
    return points


def _show(value: Any) -> str:
    """A factor value in a message: scalars as show_value does, lists and mappings as JSON."""
    return _text(value) if isinstance(value, dict | list) else show_value(value)


def _column_values(values: list[Any]) -> list[Any]:
    """A factor's values as one column type: ints, floats, booleans, or else text as written."""
    scalars = all(isinstance(v, str | int | float | bool) for v in values)
    if scalars and all(isinstance(v, bool) for v in values):
        return list(values)
    if scalars and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return list(values)
    if scalars and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values]
    return [v if isinstance(v, str) else _text(v) for v in values]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value, separators=(", ", ": "), default=str)


def _keep_raw_versions(data: dict[str, Any], root: Node | None) -> None:
    """Plain numbers at a raw-text key (``kernel: [5.2, 5.20]``) keep their source text, as in scenarios."""
    raw = {dotted(p) for p in RAW_TEXT_PATHS}
    for section in ("set", "factors"):
        node = _mapping_child(root, section)
        if not isinstance(node, MappingNode) or not isinstance(data.get(section), dict):
            continue
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key not in raw:
                continue
            items = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            texts = [_raw(item) for item in items]
            if isinstance(value_node, SequenceNode) and isinstance(data[section].get(key), list):
                data[section][key] = [t if t is not None else v for t, v in zip(texts, data[section][key])]
            elif texts[0] is not None:
                data[section][key] = texts[0]


def _mapping_child(node: Node | None, key: str) -> Node | None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                return value_node
    return None


def _raw(node: Node) -> str | None:
    number_tags = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    return node.value if isinstance(node, ScalarNode) and node.style is None and node.tag in number_tags else None


def written_values(text: str) -> dict[str, list[str]]:
    """Each factor's values as a sweep file's text writes them (``off``, ``1GiB``), by factor key.

    Read from the YAML nodes, not the values YAML builds from them; a value that is not a plain
    scalar (a list, a mapping) is shown as compact JSON of what it holds."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    factors = _child(root, "factors")
    if not isinstance(factors, MappingNode):
        return {}
    out: dict[str, list[str]] = {}
    for key_node, value_node in factors.value:
        if not isinstance(key_node, ScalarNode) or not isinstance(value_node, SequenceNode):
            continue
        out[key_node.value] = [_node_text(item) for item in value_node.value]
    return out


def _child(node: Any, key: str) -> Any:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                return value_node
    return None


def _node_text(node: Any) -> str:
    if isinstance(node, ScalarNode):
        return node.value
    value = yaml.safe_load(yaml.serialize(node))
    return json.dumps(value, separators=(", ", ": "), default=str)
