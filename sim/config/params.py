"""Scenario sections that override the kernel parameter dataclasses (memory, sched, vmalloc).

The kernel keeps its tunables in frozen dataclasses (:class:`MemoryParams`,
:class:`SchedParams`, :class:`VmallocParams`) with the kernel's values as
defaults.  :func:`params_model` turns such a dataclass into a pydantic model
with the same fields, the same defaults and unknown keys rejected, recursively
for nested dataclasses, so that ``machine.memory.reclaim_rates.file_clean`` is
checked like any other scenario key and a new dataclass field appears in the
scenario schema without an edit here.  :func:`to_dataclass` turns a validated
section back into the dataclass with ``dataclasses.replace``.  ``swap_bw_pages_s`` is left out of the memory
section: a scenario sets swap with ``machine.swap``.

Units: the dataclasses hold plain numbers.  Where the field name says the unit,
a unit string is accepted as well: ``*_ms`` (milliseconds: "200us"), ``*_s``
and the second-valued fields in :data:`SECONDS_FIELDS` (seconds: "6ms"),
``*_pages_s`` (pages per second: "80MiB/s") and ``*_kbytes`` (kB: "4MiB").
Every other field takes a plain number only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema, create_model

from sim.kernel.mm.vmalloc.alloc import VmallocParams
from sim.kernel.mm.zones import MemoryParams
from sim.kernel.sched.cpu import SchedParams
from sim.schema.input_model import InputModel
from sim.schema.units import parse_duration, parse_rate, parse_size

PAGE_SIZE = 4096

# Fields in seconds whose names do not say so (SchedParams, VmallocParams).
SECONDS_FIELDS = frozenset(
    {
        "sched_latency",
        "min_granularity",
        "wakeup_granularity",
        "t_core_alloc",
        "t_core_free",
        "t_check_lock",
        "t_map_page",
        "purge_base",
        "purge_per_va",
        "purge_ipi_per_cpu",
        "t_pool_op",
        "warn_interval",
    }
)


def none_as_empty(value: Any) -> Any:
    """An empty YAML section (``memory:`` with nothing under it) is an empty mapping."""
    return {} if value is None else value


Section = BeforeValidator(none_as_empty)


def _number_or(convert: Callable[[str], float]) -> Callable[[Any], Any]:
    """A before-validator: numbers pass unchanged (the field's own unit), strings are converted."""

    def check(value: Any) -> Any:
        return convert(value) if isinstance(value, str) else value

    return check


def _ms(text: str) -> float:
    return parse_duration(text) * 1e3


def _pages_per_s(text: str) -> float:
    return parse_rate(text) / PAGE_SIZE


def _kbytes(text: str) -> int:
    nbytes = parse_size(text)
    if nbytes % 1024:
        raise ValueError(f"{text!r} is not a whole number of kB")
    return nbytes // 1024


def unit_of(name: str) -> tuple[Callable[[str], float], str] | None:
    """(string converter, unit word) for a field named ``name``, or None for plain numbers."""
    if name.endswith("_pages_s"):
        return _pages_per_s, "pages/s"
    if name.endswith("_ms"):
        return _ms, "ms"
    if name.endswith("_s") or name in SECONDS_FIELDS:
        return parse_duration, "s"
    if name.endswith("_kbytes"):
        return _kbytes, "kB"
    return None


def _with_unit(tp: Any, convert: Callable[[str], float], unit: str) -> Any:
    """``tp`` with ``convert`` applied to string inputs of its numeric parts (Optional, tuples)."""
    if tp in (int, float):
        schema = {
            "anyOf": [{"type": "number"}, {"type": "string"}],
            "description": f"a number in {unit}, or a string with its unit",
        }
        return Annotated[tp, BeforeValidator(_number_or(convert)), WithJsonSchema(schema)]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return typing.Union[tuple(_with_unit(a, convert, unit) for a in args)]  # noqa: UP007
    if origin is tuple:
        return tuple[tuple(_with_unit(a, convert, unit) if a is not Ellipsis else a for a in args)]
    return tp


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"{field.name} has no default; a scenario section needs one")


def params_model(cls: type, qualname: str, exclude: frozenset[str] = frozenset()) -> type[BaseModel]:
    """A pydantic model of the fields of dataclass ``cls`` (minus ``exclude``), defaults kept.

    The model is named after the dataclass (its title in the JSON Schema) and
    must be bound to ``qualname`` in this module, nested models as attributes of
    their parent, so that pickle (process-pool executors) can find them."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    nested: dict[str, type[BaseModel]] = {}
    for field in dataclasses.fields(cls):
        if field.name in exclude or not field.init:
            continue
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            sub = nested[tp.__name__] = params_model(tp, f"{qualname}.{tp.__name__}")
            fields[field.name] = (Annotated[sub, Section], Field(default_factory=sub))
            continue
        unit = unit_of(field.name)
        if unit is not None:
            tp = _with_unit(tp, *unit)
        fields[field.name] = (tp, Field(_default(field)))
    model = create_model(cls.__name__, __base__=InputModel, __doc__=cls.__doc__, __module__=__name__, **fields)
    model.__qualname__ = qualname
    for name, sub in nested.items():
        setattr(model, name, sub)
    return model


def to_dataclass(cls: type, section: BaseModel, **extra: Any) -> Any:
    """``cls()`` with the values of ``section`` (and ``extra``) put in by ``dataclasses.replace``."""
    hints = typing.get_type_hints(cls)
    base = cls()
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in type(section).model_fields:
            continue
        value = getattr(section, field.name)
        if dataclasses.is_dataclass(hints[field.name]):
            value = to_dataclass(hints[field.name], value)
        changes[field.name] = value
    changes.update(extra)
    return dataclasses.replace(base, **changes)


MemorySection = params_model(MemoryParams, "MemorySection", exclude=frozenset({"swap_bw_pages_s"}))
SchedSection = params_model(SchedParams, "SchedSection")
VmallocSection = params_model(VmallocParams, "VmallocSection")
