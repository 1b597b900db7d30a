"""Scenario files: the pydantic schema of a scenario, loading with line numbers, ``--set``, hash.

A scenario names a kernel profile, the split-object strategies to compare, a
machine, a list of workloads, a duration, a seed and a number of replications;
one run is one (strategy, replication).  Every section rejects unknown keys, so
a typo is an error instead of a silently ignored setting, and values take
units ("256MiB", "10ms", "80MiB/s").  :func:`load_scenario` reads the YAML with
node marks, applies ``--set key.path=value`` overrides, validates, and turns
the first problem into one :class:`InputError` line ``FILE:LINE: key.path:
message`` (``FILE: --set key.path: message`` when an override is at fault).
The ``machine.memory``/``sched``/``vmalloc`` sections mirror the kernel's
parameter dataclasses field by field (see :mod:`sim.config.params`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sim.config.params import MemorySection, SchedSection, Section, VmallocSection, to_dataclass
from sim.config.paths import (
    PathError,
    apply_override,
    describe_error,
    dotted,
    explained_errors,
    parse_override,
    show_value,
)
from sim.config.yamlpos import Loc, line_of, read_yaml
from sim.kernel.machine import MachineConfig
from sim.kernel.mm.pools import POOLS
from sim.kernel.mm.vmalloc.alloc import VmallocParams
from sim.kernel.mm.vmalloc.strategies import STRATEGIES, unknown_strategy_message
from sim.kernel.mm.zones import PAGE_SIZE, MemoryParams, build_zones
from sim.kernel.profile import DEFAULT_PROFILE, PROFILES
from sim.kernel.sched.cpu import FORK_BALANCE, PICK, PREEMPT_MODELS, SchedParams
from sim.schema.errors import InputError
from sim.schema.input_model import InputModel
from sim.schema.limits import MAX_CPUS, MAX_RAM, MAX_RUNS, MAX_SAMPLES, runs_limit_message
from sim.schema.units import (
    Duration,
    RamShare,
    ShareSize,
    Size,
    format_duration,
    format_size,
    parse_ram_share,
    parse_rate,
    parse_size,
    ram_share_bytes,
)
from sim.workloads.registry import WORKLOADS

MIN_RAM = 32 << 20  # managed_pages_model needs two DMA-sized spans
SLAB_ALLOCATORS = tuple(dict.fromkeys(name for p in PROFILES.values() for name in p.slab_allocators))
_MACHINE = MachineConfig()
_THP = {"auto": None, "on": True, "off": False}
_SWAP_OFF = frozenset({"off", "none", "no", "false", "0"})
EXTENSION_PREFIX = "x-"  # top-level keys that load_scenario drops (YAML anchors live there)


def _workload_union() -> Any:
    """One spec model per kind of :data:`WORKLOADS`, discriminated by ``kind`` (built at import)."""
    specs = tuple(spec for spec, _ in WORKLOADS.values())
    if len(specs) == 1:
        return specs[0]
    return Annotated[Union[specs], Field(discriminator="kind")]  # noqa: UP007


WorkloadSpecs = _workload_union()


def _profile_name(value: Any) -> Any:
    """YAML reads ``kernel: 5.2`` as a float; a profile name is its text."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _thp(value: Any) -> Any:
    """YAML 1.1 reads ``on``/``off`` as booleans."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return "auto" if value is None else value


def _swap(value: Any) -> float | None:
    """Swap off (off, none, false, nothing) or its bandwidth in bytes/s ("80MiB/s")."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _SWAP_OFF):
        return None
    if value is True:
        raise ValueError("to turn swap on, give its bandwidth, e.g. swap: 80MiB/s")
    if isinstance(value, int | float) and value == 0:
        return None
    rate = parse_rate(value)
    if not 0 < rate < math.inf:
        raise ValueError(f"expected off or a bandwidth above 0 such as 80MiB/s, got {value!r}")
    return rate


def _format_swap(rate: float | None) -> str:
    """Swap as the manifest shows it: "off" or "80MiB/s" (reads back through :func:`_swap`)."""
    if rate is None:
        return "off"
    return f"{format_size(int(rate))}/s" if rate == int(rate) else f"{rate}/s"


def _upper(value: Any) -> Any:
    """``slab: slub`` means SLUB."""
    return value.upper() if isinstance(value, str) else value


def _as_list(value: Any) -> Any:
    """``strategies: nowait`` (one name, e.g. from --set) is a list of one."""
    return [value] if isinstance(value, str) else value


def _known_strategy(value: Any) -> str:
    """A name of the strategy registry *now*: a plug-in loaded before validation counts.  The
    error is pydantic's literal error, so that it reads like any other unknown name."""
    if isinstance(value, str) and value in STRATEGIES:
        return value
    expected = ", ".join(repr(name) for name in STRATEGIES)
    raise PydanticCustomError("literal_error", "Input should be one of {expected}", {"expected": expected})


class _StrategyNames:
    """The JSON Schema of a strategy name: the registry's names when the schema is made."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {"enum": list(STRATEGIES), "type": "string"}


StrategyName = Annotated[str, BeforeValidator(_known_strategy), _StrategyNames()]


def _kernel_schema() -> WithJsonSchema:
    """Profile names as strings, and as the numbers a YAML 1.2 editor reads ``kernel: 5.2`` as."""
    numbers = [float(name) for name in PROFILES if str(float(name)) == name]
    return WithJsonSchema({"enum": [*PROFILES, *numbers], "description": "kernel profile"})


KernelName = Annotated[Literal[tuple(PROFILES)], BeforeValidator(_profile_name), _kernel_schema()]
_SWAP_SCHEMA = {
    "anyOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0}, {"type": "boolean", "const": False}],
    "description": "off, or the swap device's bandwidth such as '80MiB/s' (bytes/s for a number)",
}
Swap = Annotated[
    float | None, BeforeValidator(_swap), PlainSerializer(_format_swap, return_type=str), WithJsonSchema(_SWAP_SCHEMA)
]


class _PoolSizes(InputModel):
    """Sizes by pool, read like a mapping: ``items()`` gives (pool, bytes) for every pool."""

    def items(self) -> Iterator[tuple[str, int]]:
        return ((pool, getattr(self, pool)) for pool in type(self).model_fields)


BootMemory = create_model(
    "BootMemory",
    __base__=_PoolSizes,
    __doc__="Memory in use at boot, by pool (sizes, or shares of RAM); charged before the workloads start.",
    **{pool: (ShareSize, Field(0, description=f"{pool} pages present at boot")) for pool in POOLS},
)


class MachineSpec(InputModel):
    """The simulated machine; kernel tunables in ``memory``, ``sched`` and ``vmalloc``."""

    cpus: int = Field(_MACHINE.cpus, ge=1)
    ram: Size = Field(_MACHINE.ram, description="RAM size, e.g. '256MiB'")
    thp: Annotated[Literal["auto", "on", "off"], BeforeValidator(_thp)] = "auto"
    swap: Swap = None
    preemption: Literal[PREEMPT_MODELS] = _MACHINE.preemption
    slab: Annotated[Literal[SLAB_ALLOCATORS], BeforeValidator(_upper)] = _MACHINE.slab
    zoneinfo: str | None = Field(
        None, description="a real /proc/zoneinfo: managed pages per zone from it (relative to the scenario file)"
    )
    dmesg: str | None = Field(None, description="that machine's dmesg, for the exact boot-time managed pages")
    boot_memory: Annotated[BootMemory, Section] = Field(default_factory=BootMemory)
    memory: Annotated[MemorySection, Section] = Field(default_factory=MemorySection)
    sched: Annotated[SchedSection, Section] = Field(default_factory=SchedSection)
    vmalloc: Annotated[VmallocSection, Section] = Field(default_factory=VmallocSection)

    @field_validator("ram")
    @classmethod
    def _ram_in_range(cls, value: int) -> int:
        if value < MIN_RAM:
            raise ValueError(f"expected at least 32MiB of RAM, got {format_size(value)}")
        if value > MAX_RAM:
            raise ValueError(f"expected at most 64TiB of RAM (x86-64 with 4-level page tables), got {_huge(value)}")
        return value

    @field_validator("cpus")
    @classmethod
    def _cpus_at_most_nr_cpus(cls, value: int) -> int:
        if value > MAX_CPUS:
            raise ValueError(f"expected at most {MAX_CPUS} CPUs (x86-64's largest NR_CPUS), got {_huge(value)}")
        return value


def _huge(value: int) -> str:
    """A number in a message, shortened when it has more digits than a reader can count."""
    text = format_size(value) if value % 1024 == 0 and value < 1 << 60 else str(value)
    return text if len(text) <= 20 else f"{value:.3g}"


def _fail(loc: Loc, message: str) -> None:
    """A cross-field error with its own key path (pydantic gives model validators none)."""
    raise PydanticCustomError("scenario", "{where}: {message}", {"loc": loc, "where": dotted(loc), "message": message})


class Scenario(InputModel):
    """One scenario: a machine, its workloads, the strategies to compare and how long, how often."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="vmsim scenario",
        json_schema_extra={"patternProperties": {"^x-": {"description": "ignored: a place for YAML anchors"}}},
    )

    name: str = Field("scenario", min_length=1, description="default: the file's stem")
    description: str = ""
    kernel: KernelName = DEFAULT_PROFILE
    strategies: Annotated[list[StrategyName], BeforeValidator(_as_list), Field(min_length=1)]
    duration: Duration
    seed: int = Field(0, ge=0)
    replications: int = Field(1, ge=1)
    sample_interval: Duration = _MACHINE.sample_interval
    machine: Annotated[MachineSpec, Section] = Field(default_factory=MachineSpec)
    workloads: list[WorkloadSpecs] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _ram_shares_to_bytes(cls, data: Any) -> Any:
        """Sizes given as a share of RAM ("36%") in bytes of this scenario's ``machine.ram``."""
        return resolve_ram_shares(data)

    @field_validator("duration", "sample_interval")
    @classmethod
    def _finite(cls, value: float, info: Any) -> float:
        if not math.isfinite(value) or (info.field_name == "duration" and value <= 0):
            raise ValueError(f"expected a finite duration{' above 0' if info.field_name == 'duration' else ''}")
        return value

    def samples_per_run(self) -> int:
        """Time-series samples one run takes (0 with sampling off)."""
        return 0 if self.sample_interval <= 0 else math.floor(self.duration / self.sample_interval * (1 + 1e-12))

    def run_count(self) -> int:
        """Runs of this scenario (strategies x replications), without listing them."""
        return len(self.strategies) * self.replications

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        """What one field cannot check alone: duplicates, the profile's slab allocators, boot memory."""
        if self.samples_per_run() > MAX_SAMPLES:
            finest = format_duration(self.duration / MAX_SAMPLES, round_up=True)
            _fail(("sample_interval",), f"{self.samples_per_run():,} samples in {format_duration(self.duration)}; "
                  f"at most {MAX_SAMPLES:,} per run: use {finest} or more (0 turns sampling off)")  # fmt: skip
        for i, name in enumerate(self.strategies):
            if name in self.strategies[:i]:
                _fail(("strategies", i), f"{name!r} is listed twice")
        profile = PROFILES[self.kernel]
        m = self.machine
        if m.slab not in profile.slab_allocators:
            _fail(
                ("machine", "slab"),
                f"kernel {self.kernel} has no {m.slab}{' (SLAB was removed in 6.8)' if m.slab == 'SLAB' else ''}; "
                f"expected one of: {', '.join(profile.slab_allocators)}",
            )
        if not (math.isfinite(m.sched.cpu_slowdown) and m.sched.cpu_slowdown > 0):
            _fail(("machine", "sched", "cpu_slowdown"), f"expected a positive factor, got {m.sched.cpu_slowdown}")
        if m.sched.fork_balance not in FORK_BALANCE:
            _fail(("machine", "sched", "fork_balance"), f"expected one of {', '.join(FORK_BALANCE)}, "
                  f"got {m.sched.fork_balance!r}")  # fmt: skip
        if m.sched.pick not in PICK:
            _fail(("machine", "sched", "pick"), f"expected one of {', '.join(PICK)}, got {m.sched.pick!r}")
        if m.zoneinfo is not None and m.memory.zones is not None:
            _fail(("machine", "memory", "zones"), "give machine.zoneinfo or machine.memory.zones, not both")
        if m.zoneinfo is not None:
            self._check_against_zoneinfo()
        if m.dmesg is not None and m.zoneinfo is None:
            _fail(("machine", "dmesg"), "needs machine.zoneinfo")
        boot = sum(getattr(m.boot_memory, pool) for pool in POOLS)
        if boot > m.ram:
            _fail(("machine", "boot_memory"), f"{boot >> 20} MiB in use at boot is more than ram")
        try:
            build_zones(m.ram, m.cpus, _THP[m.thp] is not False, profile, self._memory_params())
        except InputError as err:
            _fail(("machine", "dmesg" if err.source == m.dmesg else "zoneinfo"), err.message)
        except ValueError as err:
            _fail(("machine", "memory", "zones") if m.memory.zones is not None else ("machine", "ram"), str(err))
        return self

    def _check_against_zoneinfo(self) -> None:
        """machine.ram and machine.cpus must describe the machine the zoneinfo file came from."""
        from sim.config.zoneinfo import machine_ram, read_zoneinfo

        m = self.machine
        try:
            records = read_zoneinfo(Path(m.zoneinfo))
        except InputError as err:
            _fail(("machine", "zoneinfo"), err.message)
        ram = machine_ram(records)
        if abs(ram - m.ram) > 0.03 * m.ram:
            _fail(("machine", "ram"), f"{m.ram >> 20} MiB, but machine.zoneinfo holds {ram >> 20} MiB of zones")
        cpus = max((z.cpus for z in records), default=0)
        if cpus and cpus != m.cpus:
            _fail(("machine", "cpus"), f"{m.cpus}, but machine.zoneinfo lists per-CPU pages of {cpus} CPUs")

    def _memory_params(self) -> MemoryParams:
        swap = self.machine.swap
        pages_s = None if swap is None else swap / PAGE_SIZE
        params = to_dataclass(MemoryParams, self.machine.memory, swap_bw_pages_s=pages_s)
        if self.machine.zoneinfo is None:
            return params
        from sim.config.zoneinfo import calibrated_zones, read_dmesg, read_zoneinfo

        dmesg = None if self.machine.dmesg is None else read_dmesg(Path(self.machine.dmesg))
        cal = calibrated_zones(read_zoneinfo(Path(self.machine.zoneinfo)), dmesg)
        return replace(params, zones=cal.zones, freed_after_boot=cal.freed_after_boot, freed_zone=cal.freed_zone)

    def machine_config(self, strategy: str) -> MachineConfig:
        """The kernel-side configuration of the runs of ``strategy`` (tunables replaced, swap in pages/s)."""
        if strategy not in STRATEGIES:
            raise ValueError(unknown_strategy_message(strategy))
        m = self.machine
        return MachineConfig(
            cpus=m.cpus,
            ram=m.ram,
            thp=_THP[m.thp],
            kernel=self.kernel,
            preemption=m.preemption,
            slab=m.slab,
            strategy=strategy,
            memory=self._memory_params(),
            sched=to_dataclass(SchedParams, m.sched),
            vmalloc=to_dataclass(VmallocParams, m.vmalloc),
            sample_interval=self.sample_interval,
        )

    def boot_pages(self) -> dict[str, int]:
        """Pages present at boot per pool (every pool of sim.kernel.mm.pools.POOLS; sizes rounded down)."""
        return {pool: getattr(self.machine.boot_memory, pool) // PAGE_SIZE for pool in POOLS}

    def runs(self) -> list[tuple[str, int]]:
        """Every (strategy, replication) of this scenario, strategy by strategy."""
        return list(itertools.product(self.strategies, range(self.replications)))

    def scenario_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of :func:`resolved_dict`, without name and description:
        two files that simulate the same thing hash the same, and any value that changes a run
        (kernel defaults included, as they are resolved) changes the hash."""
        data = resolved_dict(self)
        for key in ("name", "description"):
            data.pop(key, None)
        for key in ("zoneinfo", "dmesg"):  # what a file holds decides the run, not where it lies
            if data["machine"].get(key) is not None:
                data["machine"][key] = _file_digest(data["machine"][key])
        _drop_later_defaults(data)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()


def _share_fields(model: type[InputModel]) -> tuple[str, ...]:
    """The fields of ``model`` that take a share of RAM (typed :data:`ShareSize`)."""
    return tuple(name for name, f in model.model_fields.items() if any(isinstance(m, RamShare) for m in f.metadata))


def resolve_ram_shares(data: Any) -> Any:
    """``data`` (a scenario as read) with every well-formed share of RAM ("36%") in a field that
    takes one (machine.boot_memory, anon_hog and shmem sizes) replaced by its bytes of
    ``machine.ram`` (its default when absent).  ``data`` itself is not changed: a sweep
    validates its base and then each point from the same data with another RAM.  What cannot
    be resolved (a malformed or out-of-range share, a RAM that is no size) is left for the
    field's own validation to report at its key."""
    if not isinstance(data, dict):
        return data
    machine = data.get("machine")
    machine = machine if isinstance(machine, dict) else {}
    try:
        ram = parse_size(machine.get("ram", _MACHINE.ram))
    except ValueError:
        return data

    def resolved(node: Any, fields: tuple[str, ...]) -> Any:
        if not isinstance(node, dict):
            return node
        out = dict(node)
        for key in fields:
            try:
                share = parse_ram_share(node.get(key))
            except ValueError:
                continue
            if share is not None:
                out[key] = ram_share_bytes(share, ram)
        return out

    out = dict(data)
    if isinstance(machine.get("boot_memory"), dict):
        out["machine"] = {**machine, "boot_memory": resolved(machine["boot_memory"], _share_fields(BootMemory))}
    if isinstance(data.get("workloads"), list):
        kinds = {kind: _share_fields(spec) for kind, (spec, _) in WORKLOADS.items()}
        out["workloads"] = [
            resolved(w, kinds.get(w.get("kind"), ())) if isinstance(w, dict) and isinstance(w.get("kind"), str) else w
            for w in data["workloads"]
        ]
    return out


# Keys added after sweeps were first written, with the defaults that leave a run as it was:
# left out of the hash at their defaults, so that a sweep started before them still resumes.
LATER_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("machine", "zoneinfo"): None,
    ("machine", "dmesg"): None,
    ("machine", "memory", "freed_after_boot"): 0,
    ("machine", "memory", "freed_zone"): "DMA32",
    ("machine", "memory", "console_baud"): 115200,
    ("machine", "memory", "console_loglevel"): 3,
    ("machine", "sched", "cpu_slowdown"): 1.0,
    ("machine", "sched", "fork_balance"): "least_loaded",
    ("machine", "sched", "pick"): "fifo",
    ("machine", "sched", "wake_affine"): False,
    ("machine", "vmalloc", "t_pool_op"): 1e-07,  # issue 16: only 6.9's node pools read it
}
LATER_WORKLOAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "fork_storm": {"restart": True, "rcu_grace": 8e-3, "task_struct_size": "4872B", "pti": True, "mm_slab_pages": 1},
}


def _drop_later_defaults(data: dict[str, Any]) -> None:
    """Remove LATER_DEFAULTS (and the workloads' ones) from ``data`` where they hold their default."""
    for path, default in LATER_DEFAULTS.items():
        *parents, key = path
        node = data
        for part in parents:
            node = node.get(part, {})
        if key in node and node[key] == default:
            del node[key]
    for workload in data.get("workloads", []):
        for key, default in LATER_WORKLOAD_DEFAULTS.get(workload.get("kind"), {}).items():
            if workload.get(key) == default:
                del workload[key]


def _file_digest(path: str) -> str:
    """sha256 of a file's bytes (the path itself if it cannot be read)."""
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return path


def _jsonable(value: Any) -> Any:
    """Plain JSON data: tuples as lists, non-finite floats as the strings inf, -inf, nan."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def resolved_dict(scenario: Scenario) -> dict[str, Any]:
    """The whole scenario with every default filled in, as JSON data for the manifest.

    Sizes are strings ("256MiB"), swap is "off" or a bandwidth, durations are
    seconds; infinities are the string "inf" (strict JSON has none)."""
    return _jsonable(scenario.model_dump(mode="json"))


def load_scenario(path: str | Path, overrides: Sequence[str] = (), max_runs: int = MAX_RUNS) -> Scenario:
    """Read, override (``key.path=value`` strings) and validate the scenario in ``path``;
    more than ``max_runs`` runs (strategies x replications) is refused.

    Top-level keys that start with ``x-`` are dropped first (a place for YAML
    anchors that workloads share).  The first problem becomes an InputError: ``FILE:LINE: key.path: message``,
    or ``FILE: --set key.path: message`` when it lies under an override."""
    path = Path(path)
    source = str(path)
    doc = read_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        got = "an empty file" if data is None else show_value(data)
        keys = ", ".join(Scenario.model_fields)
        raise InputError(source, line_of(doc.root, ()) or 1, f"expected a mapping of scenario keys ({keys}), got {got}")
    for key in [k for k in data if isinstance(k, str) and k.startswith(EXTENSION_PREFIX)]:
        del data[key]  # a place for YAML anchors, as in Docker Compose files
    data.setdefault("name", path.stem)
    resolve_machine_files(data, path.parent)
    set_paths: list[Loc] = []
    for text in overrides:
        try:
            loc, value = parse_override(text)
            apply_override(Scenario, data, loc, value)
        except (PathError, ValueError) as err:
            raise InputError(source, None, f"--set {text.partition('=')[0].strip()}: {err}") from None
        set_paths.append(loc)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise _first_error(err, data, doc.root, set_paths, source) from None
    if scenario.run_count() > max_runs:
        what = f"{len(scenario.strategies)} strategies x {scenario.replications:,} replications"
        message = f"replications: {runs_limit_message(what, scenario.run_count(), max_runs)}"
        if ("replications",) in set_paths:
            raise InputError(source, None, f"--set {message}")
        raise InputError(source, line_of(doc.root, ("replications",)), message)
    return scenario


def resolve_machine_files(data: dict[str, Any], folder: Path) -> None:
    """machine.zoneinfo and machine.dmesg relative to the scenario file's folder."""
    machine = data.get("machine")
    if not isinstance(machine, dict):
        return
    for key in ("zoneinfo", "dmesg"):
        value = machine.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            machine[key] = str(folder / value)


def _first_error(err: ValidationError, data: Any, root: Any, set_paths: list[Loc], source: str) -> InputError:
    """The error that comes first: one under a --set override, else the one nearest the top of the file."""
    ranked = []
    for order, error in enumerate(explained_errors(err.errors())):
        loc, message = describe_error(error, data, Scenario)
        if any(loc[: len(p)] == p for p in set_paths):
            ranked.append(((-1, order), InputError(source, None, f"--set {dotted(loc)}: {message}")))
        else:
            line = line_of(root, loc)
            ranked.append(((line or 0, order), InputError(source, line, f"{dotted(loc)}: {message}")))
    return min(ranked, key=lambda item: item[0])[1]


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a scenario file, for editors; non-finite defaults left out."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return _drop_non_finite_defaults(schema)


def _drop_non_finite_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        default = node.get("default")
        out = {k: _drop_non_finite_defaults(v) for k, v in node.items()}
        if isinstance(default, float) and not math.isfinite(default):
            del out["default"]
        return out
    if isinstance(node, list):
        return [_drop_non_finite_defaults(v) for v in node]
    return node
