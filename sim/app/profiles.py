"""``vmsim profiles``: the kernel profiles, and what each models of its kernel and what not.

A profile must never claim a kernel it does not model: every profile carries the upstream
changes it models and those of its kernel it leaves out (:class:`~sim.kernel.profile.KernelProfile`
``models`` / ``not_modelled``); this prints them, as text or JSON.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sim.kernel.profile import PROFILES, KernelProfile, get_profile
from sim.schema.errors import InputError

_LISTS = ("models", "not_modelled")


def profile_record(profile: KernelProfile) -> dict[str, Any]:
    """A profile as a JSON-ready dict: its switches, then what it models and what not."""
    record = {f.name: getattr(profile, f.name) for f in fields(profile) if f.name not in _LISTS}
    record["slab_allocators"] = list(profile.slab_allocators)
    record["models"] = list(profile.models)
    record["not_modelled"] = list(profile.not_modelled)
    return record


def chosen_profiles(name: str | None) -> list[KernelProfile]:
    """Every profile, or the one called ``name`` (a one-line error naming the known ones)."""
    if name is None:
        return list(PROFILES.values())
    try:
        return [get_profile(name)]
    except KeyError as err:
        raise InputError("profiles", None, f"NAME: {err.args[0]}") from None


def profile_text(profile: KernelProfile) -> str:
    """One profile as text: its default split strategy and search rule, then two lists."""
    lines = [
        f"{profile.name}  (default split strategy {profile.split_strategy}, search {profile.search}, "
        f"struct vmap_area {profile.vmap_area_size} B, slab {'/'.join(profile.slab_allocators)})",
        "  models:",
        *(f"    - {note}" for note in profile.models),
        "  does not model:",
        *(f"    - {note}" for note in profile.not_modelled or ("(nothing listed)",)),
    ]
    return "\n".join(lines) + "\n"


__all__ = ["chosen_profiles", "profile_record", "profile_text"]
