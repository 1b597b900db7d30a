"""`vmsim peer`, reading side: captured guest output (tests/data/peer, from real
boots of Debian's 6.1 and of v5.2.1) into vmsim's tables, and rebuilding a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from sim.peer.capture import (
    counter_values,
    dmesg_events,
    measure_window,
    parse_guest,
    parse_hists,
    runs_row,
    timeseries_rows,
)
from sim.peer.qemu import compress_logs, read_ports
from sim.peer.session import rebuild
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "peer"
V61 = DATA / "v61-reclaim"  # 6.1, stress-ng --fork 32 beside a 96 MiB hog: boosted, no failure
V52 = DATA / "v52-failure"  # 5.2.1, the 2019 workload: two NOWAIT split failures


def guest(folder: Path):
    return parse_guest(read_ports(folder))


def test_counters_of_a_61_guest_come_from_the_hist_triggers_and_vmstat():
    c = counter_values(guest(V61))
    assert c["vmalloc_calls"] == 408 and c["forks"] == 6746 and c["fork_errors"] == 0
    assert c["preload_fills"] == 823 - 408  # GFP_KERNEL vmap_area objects less one busy descriptor per call
    assert c["split_nowait_attempts"] == 0 and c["split_nowait_failures"] == 0
    assert c["direct_reclaims"] == 0 and c["oom_kills"] == 0


def test_the_52_guest_shows_the_nowait_split_and_its_failures():
    c = counter_values(guest(V52))
    assert c["split_nowait_attempts"] == 1763 and c["split_nowait_failures"] == 2
    assert c["fork_enomem"] == 1 and c["forks"] == 7394  # calls less errors
    assert c["nowait_page_failures"] == 696 and c["nowait_page_failures_silent"] == 694
    assert c["oom_kills"] == 5 and c["direct_reclaims"] == 1029


def test_hist_parser_reads_keys_signed_returns_and_the_trigger_filter():
    hists = parse_hists(guest(V52).sections["hist"])
    fork_ret = next(h for h in hists if h.event == "fork_ret")
    ((key, hits),) = fork_ret.entries
    assert key["ret"] == (1 << 64) - 12 and hits == 1 and fork_ret.filtered
    ava = [h for h in hists if h.event == "ava"]
    assert [h.filtered for h in ava] == [False, True] and ava[0].hits() == 1740


def test_split_failure_events_carry_rezkis_mode_and_call_chain():
    out = guest(V52)
    events = dmesg_events(out.sections["dmesg"], "r", measure_window(out)[0])
    fails = [e for e in events if e["kind"] == "split_nowait_failure"]
    assert len(fails) == 2
    first = fails[0]
    assert first["mode"] == "GFP_NOWAIT|__GFP_COMP" and first["gfp"] == "0x40800" and first["order"] == 0
    assert first["task"] == "stress-ng-fork"
    chain = first["chain"].split(" <- ")
    for inner, outer in (("cache_grow_begin", "kmem_cache_alloc"), ("alloc_vmap_area", "copy_process")):
        assert chain.index(inner) < chain.index(outer)
    kills = [e for e in events if e["kind"] == "oom_kill"]
    assert len(kills) == 5 and kills[0]["victim"] == "stress-ng-fork" and kills[0]["anon"] == 1268 // 4


def test_zone_samples_keep_the_boost_apart_from_the_marks():
    out = guest(V61)
    rows = timeseries_rows(out, "r")
    assert len(rows) == 11 and rows[0]["time"] >= 0
    boosted = [r for r in rows if r["DMA32_boost"]]
    assert boosted and all(r["DMA32_min"] == 410 for r in rows)  # zoneinfo prints min + boost
    assert all(r["free"] == r["DMA_free"] + r["DMA32_free"] for r in rows)
    assert "Normal_free" not in rows[0]  # a zone without managed pages is left out


def test_garbled_sample_lines_are_counted_not_fatal():
    out = guest(V52)
    assert out.garbled == 4 and out.zone_samples == [] and len(out.vmstat_samples) == 1


def test_runs_row_fills_what_a_guest_measures_and_leaves_the_rest_empty():
    out = guest(V61)
    samples = timeseries_rows(out, "r")
    row = runs_row(out, {"run_id": "r", "status": "ok"}, samples, [])
    assert row["forks"] == 6746 and row["min_free_pages"] == 2823
    assert row["sim_seconds"] == pytest.approx(20.09, abs=0.01)
    for hidden in ("fit_ne", "preload_misses", "overflow_purges", "direct_reclaim_seconds"):
        assert row[hidden] is None  # not zero: the guest cannot see it
    assert row["guest_vmalloc_calls_fork"] == 378


def test_rebuild_writes_a_folder_that_vmsim_plot_reads(tmp_path, monkeypatch, capsys):
    from tests.conftest import vmsim

    work = tmp_path / "peer" / "guest" / "r000"
    shutil.copytree(V52, work)
    compress_logs(work)
    assert not (work / "kmsg.log").exists() and (work / "kmsg.log.gz").exists()
    counts = rebuild(tmp_path / "peer", name="v52")
    assert counts["runs"] == 1 and counts["events"] == 7
    runs = pd.read_parquet(tmp_path / "peer" / "runs.parquet")
    assert runs["status"].tolist() == ["ok"] and runs["kernel"].tolist() == ["5.2.1"]
    assert (work / "zoneinfo.txt").exists() and (work / "min_free_kbytes.txt").read_text().strip() == "1972"
    code, out, err = vmsim(monkeypatch, capsys, "plot", str(tmp_path / "peer"))
    assert code == 0, err


def test_a_guest_that_died_midway_is_an_error_row_with_the_last_section():
    text = read_ports(V61)
    cut = text[: text.index("@@vmsim begin hist")]
    out = parse_guest(cut)
    assert not out.done and "measure_end" in out.sections
    from sim.peer.session import _status

    status, error = _status(out, {"returncode": 0})
    assert status == "error" and "measure_end" in error


def test_kernel_log_records_read_twice_are_kept_once_and_lost_ones_counted():
    text = "\n".join(
        ["@@K 6,10,1000000,-;first", "@@K 6,11,2000000,-;second", "@@K 6,10,1000000,-;first",
         "@@K 6,11,2000000,-;second", "@@K 6,14,3000000,-;after a gap"]
    )  # fmt: skip
    out = parse_guest(text)
    assert out.sections["dmesg"].splitlines() == [
        "[    1.000000] first", "[    2.000000] second", "[    3.000000] after a gap"
    ]  # fmt: skip
    assert out.kmsg_lost == 2


def test_the_swap_the_guest_set_up_is_recorded():
    text = read_ports(V61) + (
        "\n@@vmsim begin swap\nSetting up swapspace version 1\nFilename Type Size Used Priority\n"
        "/dev/zram0                              partition	262140		0		-2\n@@vmsim end swap\n"
    )
    row = runs_row(parse_guest(text), {"run_id": "r"}, [], [])
    assert row["guest_swap_kib"] == 262140
    assert "guest_swap_kib" not in runs_row(guest(V61), {"run_id": "r"}, [], [])
