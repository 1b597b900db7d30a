"""``vmsim peer``: one scenario on a real kernel, written as a vmsim results folder.

Build (translate the scenario, the initramfs with the agent, the root disk),
choose the accelerator, boot once per replication, parse, write.  The raw
serial output of every boot is kept under ``guest/rNNN/`` in the folder, so
the tables can be rebuilt (:func:`rebuild`) and the parser tested on real
captures.  Writes are atomic; a run that the guest did not finish is recorded
with its status, not lost.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim import __version__
from sim.peer.agent import render
from sim.peer.capture import GuestOutput, dmesg_events, measure_window, parse_guest, runs_row, timeseries_rows
from sim.peer.image import cache_dir, find_kernel, initramfs, root_disk
from sim.peer.qemu import boot, choose_accel, compress_logs, qemu_binary, read_ports
from sim.peer.translation import Translation, find_test_vmalloc, translate
from sim.record.results import RUN_COLUMNS, atomic_write_bytes, build_manifest, write_json, write_run_folder
from sim.schema.errors import InputError

STRATEGY = "real"  # the strategy column of a guest's rows: the kernel's own code


def run_peer(
    scenario_file: Path,
    overrides: list[str],
    kernel: Path | None,
    modules: Path | None,
    accel: str,
    out: Path | None,
    replications: int,
    log: Callable[[str], None] = print,
) -> Path:
    """Run ``scenario_file`` in ``replications`` guest boots and write the folder; boots
    already in the folder (the same guest work on the same kernel) are kept and counted."""
    from sim.config.scenario import load_scenario, resolved_dict

    scenario = load_scenario(scenario_file, overrides)
    try:  # the scenario's own problems first, then what the host lacks
        guest = find_kernel(kernel, modules)
    except InputError as missing:
        translate(scenario, str(scenario_file), None)
        raise missing from None
    translation = translate(scenario, str(scenario_file), guest.modules_dir)
    qemu_binary()
    target = out or Path("results") / "peer" / scenario.name
    script = render(translation.plan)
    extra = tuple(p for p in [find_test_vmalloc(guest.modules_dir)] if p and _needs_test_vmalloc(translation))
    initrd = _cached(initramfs(guest, script, extra), "initrd", ".cpio.gz")
    disk = root_disk(max(64, translation.plan.page_cache_mib + 16))
    chosen, why = choose_accel(guest, translation.machine, accel)
    log(f"{scenario.name}: {replications} boot(s) of {guest.vmlinuz.name}, {translation.machine.cpus} CPUs, "
        f"{translation.machine.ram_mib} MiB, {translation.plan.duration_s} s measured; "
        f"accel {chosen} ({why})")  # fmt: skip
    for note in translation.notes:
        log(f"  note: {note}")
    timeout = 4 * translation.plan.duration_s + 900
    meta = {
        "guest_kernel": str(guest.vmlinuz),
        "accel": chosen,
        "accel_reason": why,
        "cmdline": " ".join(translation.machine.cmdline),
        "plan": _plan_dict(translation),
        "notes": list(translation.notes),
        "initrd": str(initrd),
        "root_disk": str(disk),
    }
    first = _first_new_replication(target, meta)
    for r in range(first, first + replications):
        work = target / "guest" / f"r{r:03d}"
        work.mkdir(parents=True, exist_ok=True)
        run = boot(guest, initrd, disk, translation.machine, chosen, timeout, work)
        atomic_write_bytes(work / "command.txt", (" ".join(run.command) + "\n").encode())
        compress_logs(work)
        write_json(work / "boot.json", {"returncode": run.returncode, "wall_seconds": run.wall_seconds})
        log(f"  r{r:03d}: guest {'timed out' if run.returncode is None else 'exited'} after {run.wall_seconds:.0f} s")
    rebuild(target, scenario_dict=resolved_dict(scenario), scenario_hash=scenario.scenario_hash(),
            name=scenario.name, meta=meta)  # fmt: skip
    return target


def _first_new_replication(target: Path, meta: dict[str, Any]) -> int:
    """The number of the first new boot: a folder that holds boots of the same guest work
    (kernel, command line, agent plan, accelerator) gets more, so nothing written is lost; a folder of
    other work is refused.  Model-only parameters may differ: the guest never sees them."""

    done = sorted(target.glob("guest/r[0-9][0-9][0-9]"))
    if not done:
        return 0
    old = _read_manifest(target)
    guest = old.get("guest", {})
    if any(guest.get(key) != meta[key] for key in ("guest_kernel", "cmdline", "plan", "accel")):
        raise InputError(str(target), None, "holds guest runs of other work or another kernel: choose another --out")
    return int(done[-1].name[1:]) + 1


def _needs_test_vmalloc(translation: Translation) -> bool:
    """Whether a measured workload loads the guest's test_vmalloc module."""
    return any("test_vmalloc.ko" in c.command for c in translation.plan.measured)


def _cached(data: bytes, stem: str, suffix: str) -> Path:
    """``data`` in the cache folder under its content hash (written once)."""
    path = cache_dir() / f"{stem}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not path.exists():
        atomic_write_bytes(path, data)
    return path


def _plan_dict(t: Translation) -> dict[str, Any]:
    """The guest plan as plain data for the manifest (and the same-work check)."""
    p = t.plan
    return {
        "duration_s": p.duration_s,
        "sample_interval_s": p.sample_interval_s,
        "settle_s": p.settle_s,
        "sysctls": dict(p.sysctls),
        "zram_bytes": p.zram_bytes,
        "page_cache_mib": p.page_cache_mib,
        "shmem_mib": p.shmem_mib,
        "setup": [c.command for c in p.setup],
        "measured": [c.command for c in p.measured],
    }


def rebuild(
    folder: Path, scenario_dict: dict[str, Any] | None = None, scenario_hash: str | None = None,
    name: str | None = None, meta: dict[str, Any] | None = None,
) -> dict[str, int]:  # fmt: skip
    """(Re)write the folder's tables from the captures under ``guest/``; the manifest
    keeps what it had unless new values are given.  Returns row counts."""
    folder = Path(folder)
    old = _read_manifest(folder)
    scenario_dict = scenario_dict or old.get("scenario", {})
    name = name or scenario_dict.get("name", folder.name)
    argv = sys.argv if meta else old.get("argv", sys.argv)
    meta = meta or old.get("guest", {})
    rows, events, samples, counters = [], [], [], []
    for work in sorted((folder / "guest").glob("r[0-9][0-9][0-9]")):
        r = int(work.name[1:])
        data = read_ports(work)
        boot_info = json.loads((work / "boot.json").read_text()) if (work / "boot.json").exists() else {}
        out = parse_guest(data)
        write_boot_files(out, work)
        uname = out.sections.get("boot", "").split("\n", 1)[0].strip() or "unknown"
        run_id = f"{name}/peer/{uname}/r{r:03d}"
        status, error = _status(out, boot_info)
        series = timeseries_rows(out, run_id)
        evs = dmesg_events(out.sections.get("dmesg", ""), run_id, measure_window(out)[0])
        base = {"run_id": run_id, "scenario": name, "strategy": STRATEGY, "kernel": uname, "seed": None,
                "replication": r, "wall_seconds": boot_info.get("wall_seconds"), "status": status,
                "error": error}  # fmt: skip
        row = runs_row(out, base, series, evs)
        rows.append(row)
        events += evs
        samples += series
        counters += [{"run_id": run_id, "name": k[len("guest_"):], "value": float(v)}
                     for k, v in row.items() if k.startswith("guest_") and v is not None]  # fmt: skip
    manifest = build_manifest(
        scenario_dict, scenario_hash or old.get("scenario_hash"), None, rows, argv, {}, __version__
    )  # a guest has no seeds: root_seed None
    manifest |= {"kind": "peer", "guest": meta}
    write_run_folder(folder, manifest, rows, events, samples, list(RUN_COLUMNS), counters)
    return {"runs": len(rows), "events": len(events), "timeseries": len(samples)}


def _read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest.json, {} if there is none; a corrupt one is an InputError."""
    path = folder / "manifest.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(str(path), None, f"not a vmsim manifest ({err}): move it or choose another --out") from None
    if not isinstance(data, dict):
        raise InputError(str(path), None, "not a vmsim manifest: move it or choose another --out")
    return data


def write_boot_files(out: GuestOutput, work: Path) -> None:
    """The guest's boot state as files that ``vmsim machine --zoneinfo`` and a scenario's
    ``machine.zoneinfo``/``machine.dmesg`` read: zoneinfo.txt, meminfo.txt,
    min_free_kbytes.txt (before any workload ran) and dmesg.txt (the whole log)."""
    boot = out.sections.get("boot", "")
    if "@@zoneinfo" not in boot:
        return
    head, _, rest = boot.partition("@@zoneinfo\n")
    zoneinfo = rest.partition("@@vmstat")[0]
    meminfo = "\n".join(line for line in head.splitlines() if line.endswith(" kB") or "HugePages" in line)
    mfk = next((line.split()[1] for line in head.splitlines() if line.startswith("min_free_kbytes ")), "")
    atomic_write_bytes(work / "zoneinfo.txt", zoneinfo.encode())
    atomic_write_bytes(work / "meminfo.txt", (meminfo + "\n").encode())
    atomic_write_bytes(work / "min_free_kbytes.txt", (mfk + "\n").encode())
    if "dmesg" in out.sections:
        atomic_write_bytes(work / "dmesg.txt", (out.sections["dmesg"] + "\n").encode())


def _status(out: GuestOutput, boot_info: dict[str, Any]) -> tuple[str, str]:
    """A boot's run status: ok when the agent finished, else why not."""
    if out.done:
        return "ok", ""
    if out.errors:
        return "error", "; ".join(out.errors)
    if boot_info.get("returncode") is None and boot_info:
        return "error", "guest timed out"
    if not out.started:
        return "error", "the agent never started (see console.log)"
    last = next(reversed(out.sections), "start")
    return "error", f"guest stopped after section {re.sub(r'[^a-z_]', '', last)}"
