"""Kernel profiles say what they model and what not (`vmsim profiles`), and never claim a
change whose switch they do not turn on."""

from __future__ import annotations

import json

import pytest

from sim.kernel.profile import PROFILES

# a profile switch, and the text its "models" list must carry exactly when the switch is on
SWITCHES = {
    "vmap_nodes": "vmap nodes (6.9)",
    "stack_free_rcu": "e540bf3162e8",
    "pcp_high_from_low": "b92ca18e8ca5",
    "free_vmap_area_lock": "e36176be1c39",
    "alloc_non_block": "ab3508854353",
    "nowait_implies_nowarn": "16f5dfbc851b",
    "atomic_ignores_boost": "f80b08fc4453",
    "reclaim_throttle": "8cd7c588decf",
    "pcp_high_reclaim_limit": "c49c2c47dab6",
    "vfree_resched": "vfree's cond_resched after each page freed (in",
}


@pytest.mark.parametrize("name", list(PROFILES))
def test_a_profile_claims_a_change_exactly_when_its_switch_is_on(name):
    profile = PROFILES[name]
    models = " ".join(profile.models)
    assert profile.models, name
    for switch, tag in SWITCHES.items():
        assert (tag in models) == bool(getattr(profile, switch)), (name, switch)
    assert ("9333fe98d0a6" in models) == (profile.search == "v5.18")
    # no commit is both modelled and not
    def commits(notes: tuple[str, ...]) -> set[str]:
        return {word for note in notes for word in note.split() if len(word) == 12 and word.isalnum()}

    assert not commits(profile.models) & commits(profile.not_modelled), name


def test_69_is_the_only_profile_with_vmap_nodes_and_68_says_nothing_of_them():
    assert [p.name for p in PROFILES.values() if p.vmap_nodes] == ["6.9"]
    assert not any("vmap node" in note for note in PROFILES["6.8"].models + PROFILES["6.8"].not_modelled)
    assert any("purge helpers" in note for note in PROFILES["6.9"].not_modelled)


def test_vmsim_profiles_prints_text_and_json_and_refuses_an_unknown_one(capsys):
    from sim.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["profiles", "6.9"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "does not model:" in out and "vmap nodes (6.9)" in out
    with pytest.raises(SystemExit):
        main(["profiles", "--json"])
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == list(PROFILES) and all(r["models"] for r in records)
    with pytest.raises(SystemExit) as exit_:
        main(["profiles", "7.0"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "unknown kernel profile '7.0'" in err
