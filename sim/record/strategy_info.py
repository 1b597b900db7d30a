"""What the tables and figures know of a split-object strategy: its name, display order,
colour, the commit it models and whether it preloads.

The strategies are kernel classes (:mod:`sim.kernel.mm.vmalloc.strategies`); each declares
itself here when it is defined, so that the analysis layer, which never imports the model,
orders and colours them the way the classes say, plug-ins included.
"""

from __future__ import annotations

from dataclasses import dataclass

# Spare colours for strategies no class declared (results read without their plug-in).
_SPARE_COLOURS = ("#56B4E9", "#F0E442", "#000000", "#999999")


@dataclass(frozen=True)
class StrategyInfo:
    """One strategy as the tables see it."""

    name: str
    order: float  # display order: tables, legends, lists of names
    colour: str  # a matplotlib colour, e.g. "#0072B2"
    commit: str  # the kernel commit (or "counterfactual") the strategy models
    preloads: bool  # fills a per-CPU object before taking the lock


_DECLARED: dict[str, StrategyInfo] = {}


def declare_strategy(info: StrategyInfo) -> None:
    """Record ``info`` (called by the strategy base class when a strategy is defined)."""
    _DECLARED[info.name] = info


def forget_strategy(name: str) -> None:
    """Drop a declaration (a plug-in that failed to load half-way)."""
    _DECLARED.pop(name, None)


def strategy_info(name: str) -> StrategyInfo | None:
    """The declaration of ``name``, None if no loaded class declared it."""
    return _DECLARED.get(name)


def strategy_order(names: list[str]) -> list[str]:
    """``names`` in display order: declared ones by their order, then the others by name."""
    rank = {name: (info.order, i) for i, (name, info) in enumerate(_DECLARED.items())}
    known = sorted((n for n in dict.fromkeys(names) if n in rank), key=rank.__getitem__)
    return known + sorted(set(names) - set(known))


def strategy_colour(name: str) -> str:
    """The declared colour of ``name``; an undeclared one gets a spare colour chosen by name."""
    info = _DECLARED.get(name)
    if info is not None:
        return info.colour
    return _SPARE_COLOURS[sum(map(ord, name)) % len(_SPARE_COLOURS)]


def strategy_preloads(name: str) -> bool:
    """Whether ``name`` preloads (an undeclared name: whether it is called preload-something)."""
    info = _DECLARED.get(name)
    return info.preloads if info is not None else name.startswith("preload")
