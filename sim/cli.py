"""The ``vmsim`` command line: parse, call, print.  No model logic here."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from sim.kernel.mm.vmalloc.space import SEARCH_MODES
from sim.schema.errors import InputError
from sim.schema.limits import MAX_RUNS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Simulate the Linux vmalloc allocator.")


def _search_option(value: str | None) -> str | None:
    if value is not None and value not in SEARCH_MODES:
        raise typer.BadParameter(f"expected one of {', '.join(SEARCH_MODES)}")
    return value


@app.command()
def replay(
    trace: Annotated[Path, typer.Argument(help="JSONL trace in the vectors format.")],
    search: Annotated[
        str | None,
        typer.Option(help="v5.3 or v5.18 (default: the trace header's, else v5.3).", callback=_search_option),
    ] = None,
    check: Annotated[bool, typer.Option(help="Compare with each line's expected 'out'; exit 1 on a mismatch.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the result lines here instead of standard output.")] = None,
) -> None:
    """Replay a vmalloc trace through the allocator core.

    Writes one line per op with the result (same format); with --check prints
    ops, mismatches and the first mismatch instead.  Ends with the fit-type mix.
    """
    from sim.app.replay import read_trace
    from sim.app.replay import replay as run_replay
    from sim.record.results import atomic_write_lines

    header, ops = read_trace(trace)
    report, lines = run_replay(header, ops, search=search, check=check)
    summary = sys.stdout
    if out is not None:
        atomic_write_lines(out, lines)
    elif check:
        for _ in lines:
            pass
    else:
        for line in lines:
            sys.stdout.write(line + "\n")
        summary = sys.stderr
    _print_replay_summary(report, check, summary)
    if check and report.mismatches:
        raise typer.Exit(1)


def _print_replay_summary(report, check: bool, stream) -> None:
    mix = report.fit_mix()
    print(
        f"search {report.search}: {report.ops} ops, {report.allocs} allocs "
        f"({report.failed_allocs} failed), {report.frees} frees ({report.failed_frees} unknown), "
        f"{report.checks} checks",
        file=stream,
    )
    print("fit mix: " + ", ".join(f"{k} {report.fits[k]} ({v:.1%})" for k, v in mix.items()), file=stream)
    if check:
        print(f"compared {report.compared} ops, mismatches {report.mismatches}", file=stream)
        m = report.first_mismatch
        if m is not None:
            print(f"first mismatch at line {m['line']}:", file=stream)
            for ctx in m["context"]:
                print(f"  line {ctx['line']}: in {_short(ctx['in'])} -> {_short(ctx['out'])}", file=stream)
            print(f"  line {m['line']}: in {_short(m['in'])}", file=stream)
            print(f"    expected {_short(m['expected'])}", file=stream)
            print(f"    got      {_short(m['got'])}", file=stream)


def _short(obj: object, limit: int = 300) -> str:
    import json

    text = json.dumps(obj, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


@app.command("fit-mix")
def fit_mix(
    workload: Annotated[str, typer.Option(help="fork-stacks or random-sizes.")] = "fork-stacks",
    live: Annotated[int, typer.Option(min=1, help="Live areas in the steady state.")] = 2000,
    steps: Annotated[int, typer.Option(min=1, help="Free/alloc steps after the fill.")] = 20000,
    search: Annotated[str, typer.Option(help="v5.3 or v5.18.", callback=_search_option)] = "v5.3",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the random frees.")] = 1,
) -> None:
    """Run a built-in churn workload on the allocator core and print its fit-type mix."""
    from sim.workloads.churn import CHURN_KINDS, run_churn

    if workload not in CHURN_KINDS:
        raise InputError("--workload", None, f"expected one of {', '.join(CHURN_KINDS)}, got {workload!r}")
    result = run_churn(workload, live, steps, np.random.default_rng(seed), search=search)
    total = sum(result.fits.values())
    print(f"{workload}: {live} live areas, {steps} free/alloc steps, search {search}, seed {seed}")
    print(f"{'fit':<4} {'allocs':>8} {'share':>8}")
    for name, share in result.fit_mix().items():
        print(f"{name:<4} {result.fits[name]:>8} {share:>8.1%}")
    print(f"{'all':<4} {total:>8} {'':>8}  failed: {result.failures}")


@app.command()
def machine(
    ram: Annotated[
        str | None, typer.Option(help="RAM size, e.g. 256MiB, 1GiB, 4G (binary); MB and GB are decimal.")
    ] = None,
    cpus: Annotated[int, typer.Option(help="Number of CPUs.")] = 4,
    thp: Annotated[str | None, typer.Option(help="on or off (default: on from 512 MiB of RAM).")] = None,
    kernel: Annotated[str, typer.Option(help="Kernel profile (5.2, 5.3, 5.5, 5.18, 6.1, 6.3, 6.8, 6.9).")] = "5.2",
    zoneinfo: Annotated[Path | None, typer.Option(help="A real /proc/zoneinfo: calibrate and compare.")] = None,
    min_free_kbytes: Annotated[
        int | None, typer.Option(help="The real /proc/sys/vm/min_free_kbytes (with --zoneinfo).")
    ] = None,
    dmesg: Annotated[
        Path | None,
        typer.Option(
            help="The real machine's dmesg (with --zoneinfo): exact boot-time "
            "managed pages from its 'Freeing ... memory' lines."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Print the zones the kernel would set up: managed pages, min/low/high, lowmem_reserve,
    and min_free_kbytes (sqrt rule, THP rule), as /proc/zoneinfo would show them at boot.
    With --zoneinfo: the model's values computed from that machine's managed pages, beside
    the file's own, and those of the uncalibrated model."""
    from sim.kernel.mm.zones import MIB, build_zones, zone_table_dict
    from sim.kernel.profile import PROFILES, get_profile

    if kernel not in PROFILES:
        raise InputError("--kernel", None, f"expected one of {', '.join(PROFILES)}, got {kernel!r}")
    if thp not in (None, "on", "off"):
        raise InputError("--thp", None, f"expected on or off, got {thp!r}")
    if zoneinfo is not None:
        _machine_from_zoneinfo(zoneinfo, min_free_kbytes, dmesg, kernel, thp != "off", json_out)
        return
    if min_free_kbytes is not None or dmesg is not None:
        raise InputError("--min-free-kbytes" if min_free_kbytes is not None else "--dmesg", None, "needs --zoneinfo")
    if ram is None:
        raise InputError("--ram", None, "expected a RAM size such as 256MiB (or --zoneinfo FILE)")
    spec = _machine_spec(ram, cpus)
    ram_bytes, cpus = spec.ram, spec.cpus
    thp_on = ram_bytes >= 512 * MIB if thp is None else thp == "on"
    table = build_zones(ram_bytes, cpus, thp_on, get_profile(kernel))
    if json_out:
        import json

        print(json.dumps(zone_table_dict(table), indent=2))
        return
    _print_zone_table(table)


def _machine_spec(ram: str, cpus: int) -> Any:
    """--ram and --cpus checked as a scenario's machine.ram and machine.cpus are (same units, same bounds)."""
    from pydantic import ValidationError

    from sim.config.paths import describe_error
    from sim.config.scenario import MachineSpec

    try:
        return MachineSpec.model_validate({"ram": ram, "cpus": cpus})
    except ValidationError as err:
        loc, message = describe_error(err.errors()[0], {}, MachineSpec)
        raise InputError(f"--{loc[0]}", None, message) from None


def _machine_from_zoneinfo(path: Path, min_free_kbytes: int | None, dmesg: Path | None, kernel: str, thp: bool,
                           json_out: bool) -> None:  # fmt: skip
    import json

    from sim.config.zoneinfo import check_zones, read_dmesg, read_zoneinfo

    dmesg_text = None if dmesg is None else read_dmesg(dmesg)
    result = check_zones(read_zoneinfo(path), min_free_kbytes, dmesg_text, kernel, thp)
    if json_out:
        print(json.dumps(result, indent=2))
        return
    cal, mfk = result["calibration"], result["min_free_kbytes"]
    print(f"{path}: {result['cpus']} CPUs, kernel profile {kernel}; boot-time managed pages from {cal['method']}: "
          f"{cal['freed_after_boot']} pages freed after the watermarks were set ({cal['zone']})")  # fmt: skip
    real = "-" if mfk["real"] is None else mfk["real"]
    print(f"min_free_kbytes: model {mfk['model']}{' (set to the real value)' if mfk['overridden'] else ''}, "
          f"real {real}, uncalibrated model {mfk['uncalibrated']}")  # fmt: skip
    print(f"{'zone':<7}{'value':<18}{'real':>9}{'model':>9}{'':>3}{'uncalibrated':>13}")
    for zone in result["zones"]:
        for key, v in zone["values"].items():
            mark = "" if v["real"] is None else ("=" if v["equal"] else "!=")
            cells = ["-" if v[k] is None else str(v[k]) for k in ("real", "model", "uncalibrated")]
            print(f"{zone['zone']:<7}{key:<18}{cells[0]:>9}{cells[1]:>9}{mark:>3}{cells[2]:>13}")


def _print_zone_table(table) -> None:
    names = [z.name for z in table.zones]
    thp = "on" if table.thp_enabled else "off"
    if table.thp_requested and not table.thp_enabled:
        thp += " (hugepage_init: totalram below 512 MiB)"
    print(f"RAM {table.ram_bytes >> 20} MiB, {table.ncpus} CPUs, kernel {table.kernel}, THP {thp}")
    rule = "sqrt rule"
    if table.min_free_kbytes != table.sqrt_min_free_kbytes:
        rule = f"THP rule; the sqrt rule gives {table.sqrt_min_free_kbytes}"
    print(f"min_free_kbytes {table.min_free_kbytes} ({rule})")
    print(f"managed {table.managed} pages ({table.managed * 4 // 1024} MiB)")
    rows = [(z.name, z.managed, z.min, z.low, z.high, z.max_boost, f"{z.pcp_batch}/{z.pcp_high}",
             ", ".join(str(z.lowmem_reserve[o.idx]) for o in table.zones)) for z in table.zones]  # fmt: skip
    titles = ("zone", "managed", "min", "low", "high", "max boost", "pcp batch/high")
    widths = [max(len(str(row[i])) for row in [titles, *rows]) + (0 if i == 0 else 2) for i in range(len(titles))]
    line = f"{{:<{widths[0]}}}" + "".join(f"{{:>{w}}}" for w in widths[1:])
    print(line.format(*titles) + "  lowmem_reserve[" + ", ".join(names) + "]")
    for row in rows:
        print(line.format(*row[:-1]) + f"  ({row[-1]})")


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a scenario value, re-validated (repeatable): --set machine.cpus=8 --set workloads.0.workers=32.",
    ),
]


def parse_set_options(values: list[str] | None) -> list[str]:
    """The ``--set`` options, each checked for KEY.PATH=VALUE syntax (an InputError if not);
    pass the result to ``load_scenario``, which checks the paths against the schema."""
    from sim.config.paths import parse_override

    for text in values or []:
        try:
            parse_override(text)
        except ValueError as err:
            raise InputError(f"--set {text.partition('=')[0].strip()[:60]}", None, str(err)) from None
    return list(values or [])


YesOption = Annotated[
    bool, typer.Option("--yes", help="Run even if the estimated computing time is above the bound (8 h).")
]
MaxRunsOption = Annotated[
    int,
    typer.Option("--max-runs", min=1, help="Refuse to plan more runs than this (strategies x replications x points)."),
]
PluginOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--plugin",
        metavar="FILE.py",
        help="Load a Python file defining more split-object strategies (repeatable); workers load it too.",
    ),
]


def load_plugin_options(paths: list[Path] | None) -> tuple[str, ...]:
    """Load the entry-point plug-ins and the ``--plugin`` files (an InputError naming a bad one);
    their absolute paths, for worker processes to load."""
    from sim.engine.plugins import load_plugins

    files = tuple(str(Path(p).expanduser().resolve()) for p in paths or ())
    load_plugins(files)
    return files


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario or sweep YAML files.")],
    overrides: SetOption = None,
    max_runs: MaxRunsOption = MAX_RUNS,
    plugin: PluginOption = None,
) -> None:
    """Check scenario and sweep files: one line each, "FILE: ok (N runs ...)" or the first
    error as FILE:LINE: key.path: message (on standard error).  Exit 2 if any file is bad."""
    from sim.config.scenario import load_scenario
    from sim.config.sweepfile import is_sweep_data, load_sweep
    from sim.config.yamlpos import read_yaml

    load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    bad = 0
    for path in files:
        try:
            if is_sweep_data(read_yaml(path).data):
                if sets:
                    raise InputError(str(path), None, "a sweep file: --set applies to scenario files only")
                plan = load_sweep(path, max_runs=max_runs)
                runs = len(plan.points) * len(plan.strategies) * plan.replications
                print(f"{path}: ok (sweep: {len(plan.points)} points x {len(plan.strategies)} strategies x "
                      f"{plan.replications} replications = {runs} runs)")  # fmt: skip
                continue
            scenario = load_scenario(path, sets, max_runs=max_runs)
        except InputError as err:
            print(err, file=sys.stderr)
            bad += 1
            continue
        runs, nstrat, nrep = scenario.run_count(), len(scenario.strategies), scenario.replications
        print(
            f"{path}: ok ({runs} run{'s' * (runs != 1)}: {nstrat} strateg{'ies' if nstrat != 1 else 'y'}"
            f" x {nrep} replication{'s' * (nrep != 1)})"
        )
    if bad:
        raise typer.Exit(2)


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="Write the schema here instead of standard output.")] = None,
) -> None:
    """Print the JSON Schema of scenario files (for editors: yaml-language-server, VS Code)."""
    import json

    from sim.config.scenario import scenario_json_schema
    from sim.record.results import atomic_write_bytes

    text = json.dumps(scenario_json_schema(), indent=2, allow_nan=False) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(out, text.encode())


SUMMARY_COLUMNS = (
    ("vmalloc_calls", "vmallocs"),
    ("fit_ne", "NE"),
    ("split_nowait_attempts", "nowait"),
    ("split_nowait_failures", "nowait fail"),
    ("preload_fills", "fills"),
    ("preload_misses", "misses"),
    ("overflow_purges", "purges"),
    ("vmap_ebusy", "EBUSY"),
    ("forks", "forks"),
    ("fork_enomem", "ENOMEM"),
    ("oom_kills", "OOM kills"),
    ("direct_reclaims", "dreclaims"),
    ("sleep_in_atomic_bugs", "BUGs"),
)


@app.command()
def run(
    scenario_file: Annotated[Path, typer.Argument(help="Scenario YAML.")],
    seed: Annotated[int | None, typer.Option(min=0, help="Root seed (default: the scenario's).")] = None,
    overrides: SetOption = None,
    out: Annotated[Path | None, typer.Option(help="Results folder (default: results/<scenario name>).")] = None,
    max_runs: MaxRunsOption = MAX_RUNS,
    yes: YesOption = False,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Worker processes for the runs (same results as -j 1).")
    ] = 1,
    plugin: PluginOption = None,
) -> None:
    """Run a scenario once per strategy and replication; write the results folder
    (manifest.json, runs.parquet, events.parquet, timeseries.parquet) and print a
    summary table per strategy (means over replications).  Ctrl-C stops at once and
    writes nothing."""
    from sim import __version__
    from sim.app.signals import Interrupted, stop_on_signals
    from sim.config.scenario import load_scenario, resolved_dict
    from sim.engine.run import RUN_COLUMNS, run_scenario, run_seed
    from sim.record.results import build_manifest, counter_rows, write_run_folder
    from sim.sweep.executors import make_backend

    plugins = load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    scenario = load_scenario(scenario_file, sets, max_runs=max_runs)
    root_seed = scenario.seed if seed is None else seed
    params = {text.split("=", 1)[0]: text.split("=", 1)[1] for text in sets}
    target = out or Path("results") / scenario.name
    check_out_folder(target)
    total = len(scenario.strategies) * scenario.replications
    print(f"{scenario.name}: {len(scenario.strategies)} strategies x {scenario.replications} replications, "
          f"{scenario.duration:g} s simulated, kernel {scenario.kernel}, root seed {root_seed}"
          + (f", {jobs} workers" if jobs > 1 else ""), flush=True)  # fmt: skip
    finished = []

    def progress(result) -> None:
        row = result.row
        finished.append(row["run_id"])
        print(f"  {row['run_id']}: {row['status']} in {row['wall_seconds']:.1f} s wall", flush=True)

    try:
        with stop_on_signals():
            estimate = _estimate(str(scenario_file), [(scenario, 0)], root_seed, scenario.run_count(), jobs, yes)
            print(estimate, flush=True)
        with stop_on_signals(), make_backend("process" if jobs > 1 else "serial", jobs) as backend:
            results = run_scenario(
                scenario, root_seed, params=params, on_result=progress, backend=backend, plugins=plugins
            )
    except Interrupted as stop:
        print(f"vmsim: stopped by {stop.name} after {len(finished)} of {total} runs; nothing written "
              "(a run's folder is written when all its runs have finished)", file=sys.stderr)  # fmt: skip
        raise typer.Exit(stop.exit_code) from None
    rows = [r.row for r in results]
    seeds = {
        f"r{k}": {"entropy": root_seed, "spawn_key": list(run_seed(root_seed, 0, k).spawn_key)}
        for k in range(scenario.replications)
    }
    manifest = build_manifest(
        resolved_dict(scenario), scenario.scenario_hash(), root_seed, rows, sys.argv, seeds, __version__
    )
    write_run_folder(
        target,
        manifest,
        rows,
        [e for r in results for e in r.events],
        [s for r in results for s in r.samples],
        list(RUN_COLUMNS),
        [c for r in results for c in counter_rows(r.row["run_id"], r.counters)],
    )
    _print_summary(rows, scenario.strategies)
    print(f"results: {target}")


def _estimate(source: str, probes: list[tuple[Any, int]], root_seed: int, runs: int, workers: int, sure: bool) -> str:
    """sim.engine.cost.estimate_runs against MAX_ESTIMATED_SECONDS."""
    from sim.engine.cost import estimate_runs
    from sim.schema.limits import MAX_ESTIMATED_SECONDS

    return estimate_runs(source, probes, root_seed, runs, workers, MAX_ESTIMATED_SECONDS, sure)


def _print_summary(rows: list[dict], strategies: list[str]) -> None:
    header = f"{'strategy':<18}" + "".join(f"{label:>12}" for _, label in SUMMARY_COLUMNS) + f"{'status':>10}"
    print(header)
    for strategy in strategies:
        mine = [r for r in rows if r["strategy"] == strategy]
        cells = []
        for key, _ in SUMMARY_COLUMNS:
            mean = sum(r[key] for r in mine) / len(mine)
            cells.append(f"{mean:>12,.0f}" if mean >= 100 or mean == int(mean) else f"{mean:>12.2f}")
        ok = sum(r["status"] == "ok" for r in mine)
        print(f"{strategy:<18}" + "".join(cells) + f"{f'{ok}/{len(mine)} ok':>10}")


@app.command()
def plot(
    folder: Annotated[Path, typer.Argument(help="Results folder of vmsim run or vmsim sweep.")],
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run of the timeline (default: most split failures).")
    ] = None,
    x: Annotated[str | None, typer.Option("--x", help="Factor column of the failure curves' x axis.")] = None,
    plugin: PluginOption = None,
) -> None:
    """Draw the figures a results folder supports into FOLDER/figures/ (PNG and SVG):
    failure curves with Wilson bands, a run's timeline, the fit-type mix, and the
    preload fill latency; print the files written and what was skipped."""
    import matplotlib

    matplotlib.use("Agg")
    from sim.analysis.plots import plot_folder

    load_plugin_options(plugin)  # the strategies' order and colours

    report = plot_folder(folder, run_id=run_id, x=x)
    for path in report.written:
        print(path)
    for note in report.notes:
        print(f"skipped {note}")


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML: base scenario, factors, replications, seed.")],
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Workers (default: the CPU count).")] = None,
    executor: Annotated[str | None, typer.Option(help="serial, process (the default) or dask.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler, e.g. tcp://host:8786 (implies dask).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the runs the folder has finished.")] = False,
    out: Annotated[Path | None, typer.Option(help="Results folder (default: results/<sweep name>).")] = None,
    chunk: Annotated[int | None, typer.Option(min=1, help="Runs per chunk (default: ~4 per worker, <= 20).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the sweep file, list its points.")] = False,
    max_runs: MaxRunsOption = MAX_RUNS,
    yes: YesOption = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY.PATH=VALUE",
            help="Override a value of the base scenario after the sweep file's own (repeatable): --set duration=1s.",
        ),
    ] = None,
    plugin: PluginOption = None,
) -> None:
    """Run a sweep: every grid point x strategy x replication, in chunks on an executor; the
    folder gets part files, a status log (--resume skips what it has finished), and then the
    merged runs/events/timeseries.parquet and manifest.json.  Exit 1 if a worker crash left
    runs to retry.  Ctrl-C (or SIGTERM, SIGHUP) stops the workers at once and keeps what
    has finished for --resume."""
    from sim.app.signals import Interrupted, stop_on_signals
    from sim.config.sweepfile import load_sweep
    from sim.sweep.executors import EXECUTORS
    from sim.sweep.runner import kept_runs, run_sweep

    if executor is not None and executor not in EXECUTORS:
        raise InputError("--executor", None, f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler is not None and executor not in (None, "dask"):
        raise InputError("--scheduler", None, f"needs --executor dask, not {executor}")
    executor = executor or ("dask" if scheduler else "process")
    plugins = load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    plan = load_sweep(sweep_file, sets, max_runs=max_runs)
    runs = plan.runs()
    target = out or Path("results") / plan.name
    print(f"{plan.name}: {len(plan.points)} points x {len(plan.strategies)} strategies x {plan.replications} "
          f"replications = {len(runs)} runs, root seed {plan.seed}")  # fmt: skip
    if dry_run:
        for p in plan.points:
            values = " ".join(f"{k}={v}" for k, v in p.values.items())
            print(f"  p{p.index:04d} {values}  (scenario {p.scenario_hash[:12]})")
        return
    check_out_folder(target)
    where = f"scheduler {scheduler}" if scheduler else f"-j {jobs or os.cpu_count()}" if executor != "serial" else ""
    print(f"executor {executor} {where}".rstrip() + f", results {target}", flush=True)
    try:
        if not resume:  # a resumed sweep was estimated when it started
            workers = 1 if executor == "serial" else jobs or os.cpu_count() or 1
            corners = [plan.points[0], plan.points[-1]] if len(plan.points) > 1 else [plan.points[0]]
            with stop_on_signals():
                probes = [(plan.scenario(p), p.index) for p in corners]
                print(_estimate(str(sweep_file), probes, plan.seed, len(runs), workers, yes), flush=True)
        with stop_on_signals(), _sweep_progress() as progress:
            outcome = run_sweep(
                plan, target, executor=executor, jobs=jobs, scheduler=scheduler, resume=resume,
                chunk_size=chunk, argv=sys.argv, progress=progress, plugins=plugins,
            )  # fmt: skip
    except Interrupted as stop:
        again = ["vmsim", "sweep", str(sweep_file), "--resume", *(f"--set {text}" for text in sets)]
        again += [f"--plugin {path}" for path in plugins]
        again += ["--out", str(out)] if out is not None else []
        print(f"vmsim: stopped by {stop.name}; {kept_runs(plan, target)} of {len(runs)} runs finished are kept "
              f"in {target}; continue with: {' '.join(again)}", file=sys.stderr)  # fmt: skip
        raise typer.Exit(stop.exit_code) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.statuses.items()))
    print(f"{outcome.total} runs: {counts}; {outcome.skipped} kept from before, {outcome.ran} run now "
          f"in {outcome.wall_seconds:.1f} s")  # fmt: skip
    print(f"results: {outcome.out} (runs {outcome.rows['runs']}, events {outcome.rows['events']}, "
          f"timeseries {outcome.rows['timeseries']} rows)")  # fmt: skip
    if outcome.crashed:
        print(f"{outcome.crashed} runs failed in a worker crash; rerun with --resume to retry them", file=sys.stderr)
        raise typer.Exit(1)


def check_out_folder(target: Path, option: str = "--out") -> None:
    """Refuse, before any simulating, a results folder that cannot be one: an existing file
    (or a file on its path), or a place this user cannot write; an existing folder is fine."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise InputError(option, None, f"{target} is a file, not a results folder")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(option, None, f"cannot make the folder {target}: {existing} is a file")
    import tempfile

    try:  # the one sure test, for root and read-only file systems too: make a folder there
        os.rmdir(tempfile.mkdtemp(prefix=".vmsim-probe-", dir=existing))
    except OSError as err:
        raise InputError(option, None, f"cannot write in {existing}: {err.strerror or err}") from None


@contextmanager
def _sweep_progress(stream=None, interval: float = 10.0, heartbeat: float = 60.0):
    """Progress on standard error: a rich bar (runs done, failures, ETA) on a terminal; else plain
    lines, one each time another tenth of the runs has finished (at most every ``interval``
    seconds) and at least every ``heartbeat`` seconds, so a sweep piped to a log is never silent."""
    from rich.console import Console

    console = Console(stderr=True)
    if stream is None and console.is_terminal:
        with _rich_progress(console) as update:
            yield update
        return
    with _plain_progress(stream or sys.stderr, interval, heartbeat) as update:
        yield update


@contextmanager
def _rich_progress(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("runs"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]} failed"),
        TextColumn("ETA"), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("sweep", total=None, failed=0)

        def update(done: int, failed: int, total: int) -> None:
            bar.update(task, completed=done, total=total, failed=failed)

        yield update


@contextmanager
def _plain_progress(stream, interval: float, heartbeat: float):
    import threading
    import time

    start = time.monotonic()
    state = {"done": 0, "failed": 0, "total": 0, "first": None, "printed_done": -1, "printed_at": start}
    lock = threading.Lock()
    stop = threading.Event()

    def line() -> None:
        done, total, first = state["done"], state["total"], state["first"]
        elapsed = time.monotonic() - start
        text = f"runs {done}/{total} done, {state['failed']} failed, {elapsed:.0f} s"
        if first is not None and 0 < done - first < total - first:
            eta = elapsed / (done - first) * (total - done)
            text += f", about {eta:.0f} s to go"
        print(text, file=stream, flush=True)
        state["printed_done"], state["printed_at"] = done, time.monotonic()

    def update(done: int, failed: int, total: int) -> None:
        with lock:
            state.update(done=done, failed=failed, total=total)
            if state["first"] is None:
                state["first"] = done
            since = time.monotonic() - state["printed_at"]
            tenth_more = done - state["printed_done"] >= max(1, total // 10)
            if state["printed_done"] < 0 or done == total or (tenth_more and since >= interval):
                line()

    def beat() -> None:
        while not stop.wait(1.0):
            with lock:
                if time.monotonic() - state["printed_at"] >= heartbeat and state["done"] < state["total"]:
                    line()

    watcher = threading.Thread(target=beat, name="vmsim-progress", daemon=True)
    watcher.start()
    try:
        yield update
    finally:
        stop.set()


@app.command()
def answer(
    quick: Annotated[
        bool, typer.Option(help="A reduced suite: first and last factor values, 1 replication, 1.5 s.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default results/answer or results/answer-quick).")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("-j", "--jobs", min=1, help="Worker processes (default: CPU count).")
    ] = None,
    executor: Annotated[str, typer.Option(help="serial, process or dask.")] = "process",
    plugin: PluginOption = None,
) -> None:
    """Run the answer suite (scenarios/answer/), draw its figures and write report.md:
    which workloads suffer NE_FIT split failures without the preload, when, how, and
    what the preloads cost."""
    from sim.app.answer import run_answer
    from sim.sweep.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise InputError("--executor", None, f"expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    target = out or Path("results") / ("answer-quick" if quick else "answer")
    plugins = load_plugin_options(plugin)

    def progress(name: str, done: int, failed: int, total: int) -> None:
        print(f"  {name}: {done}/{total} runs done, {failed} failed", flush=True)

    summary = run_answer(
        target, quick=quick, executor=executor, jobs=jobs, argv=sys.argv, progress=progress, plugins=plugins
    )
    for name, info in summary["sweeps"].items():
        print(f"{name}: {info['runs']} runs, {info['statuses']}")
    print(f"report: {summary['report']}")


@app.command()
def peer(
    target: Annotated[str, typer.Argument(help="Scenario YAML, or build-kernel.", metavar="SCENARIO|build-kernel")],
    source: Annotated[Path | None, typer.Argument(help="build-kernel: the kernel source tree.")] = None,
    overrides: SetOption = None,
    kernel: Annotated[Path | None, typer.Option(help="bzImage to boot (default: the newest /boot/vmlinuz-*).")] = None,
    modules: Annotated[Path | None, typer.Option(help="Its /lib/modules/VERSION folder (default: found).")] = None,
    accel: Annotated[str, typer.Option(help="auto (KVM if a probe boot works), kvm or tcg.")] = "auto",
    replications: Annotated[int, typer.Option(min=1, help="Guest boots (each takes minutes under TCG).")] = 1,
    out: Annotated[Path | None, typer.Option(help="Results folder (default: results/peer/<scenario name>).")] = None,
) -> None:
    """Run a scenario on a real Linux kernel in QEMU and write a results folder in
    vmsim's format (runs, timeseries from /proc/zoneinfo, events from dmesg) that
    vmsim compare and vmsim plot read.  `vmsim peer build-kernel SRC` builds the
    2019 kernel (v5.2) from a source tree with the configuration vmsim needs."""
    if target == "build-kernel":
        from sim.peer.kbuild import build_kernel

        if source is None:
            raise InputError("build-kernel", None, "expected the kernel source folder: vmsim peer build-kernel SRC_DIR")
        image = build_kernel(source, out, log=lambda line: print(line, flush=True))
        print(f"kernel: {image}")
        return
    if source is not None:
        raise InputError("peer", None, f"unexpected argument {source}: give one scenario file")
    if accel not in ("auto", "kvm", "tcg"):
        raise InputError("--accel", None, f"expected auto, kvm or tcg, got {accel!r}")
    from sim.peer.session import run_peer

    folder = run_peer(Path(target), parse_set_options(overrides), kernel, modules, accel, out, replications,
                      log=lambda line: print(line, flush=True))  # fmt: skip
    print(f"results: {folder}")


@app.command()
def compare(
    model_dir: Annotated[Path, typer.Argument(help="Results folder of vmsim run (the model).")],
    peer_dir: Annotated[Path, typer.Argument(help="Results folder of vmsim peer (the real kernel).")],
    strategy: Annotated[str | None, typer.Option(help="The model's strategy to compare (default: its first).")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write compare.md (default: PEER_DIR/compare.md).")] = None,
) -> None:
    """Put the model and the real kernel side by side: every measure both have, per
    fork and per vmalloc call, with the ratio model/real; print it and write compare.md."""
    from sim.analysis.comparison import compare_folders

    text = compare_folders(model_dir, peer_dir, strategy)
    target = out or Path(peer_dir) / "compare.md"
    from sim.record.results import atomic_write_bytes

    atomic_write_bytes(target, text.encode())
    print(text, end="")
    print(f"written: {target}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point.  Bad input (an InputError, a bad option, a file that cannot be
    read or written) becomes one line on stderr and exit 2; Ctrl-C exits 130 with one line;
    anything else is a bug in vmsim: its traceback, and a request to report it."""
    usage_error, click_exception = _click_errors()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="vmsim")
    except InputError as err:
        _fail(str(err), 2)
    except usage_error as err:
        if type(err).__name__ == "NoArgsIsHelpError" and err.ctx is not None:
            print(err.ctx.get_help(), file=sys.stderr)
            sys.exit(2)
        _fail(_usage_line(err), 2)
    except click_exception as err:
        _fail(err.format_message(), err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): nothing left to say
        sys.exit(1)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        _fail(f"{where}{err.strerror or err}", 2)
    except MemoryError:
        _fail("out of memory (a smaller scenario, fewer runs or fewer workers -j may fit)", 1)
    except Exception:
        import traceback

        traceback.print_exc()
        _fail("this is a bug in vmsim, not a problem with your input: please report it with the command line "
              "and the traceback above", 1)  # fmt: skip
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    print(f"vmsim: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def _click_errors() -> tuple[type[Exception], type[Exception]]:
    """Click's UsageError and ClickException, found through typer.BadParameter's bases (typer
    may vendor its own click, so ``import click`` can name other classes)."""
    bases = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
    return bases["UsageError"], bases["ClickException"]


def _usage_line(err: Any) -> str:
    """A click usage error as one line: ``sweep: --jobs: Input should be greater than or equal to 1``."""
    command = err.ctx.command_path if err.ctx else "vmsim"
    message = err.format_message()
    if isinstance(err, typer.BadParameter) and err.param is not None and type(err).__name__ == "BadParameter":
        param = err.param
        name = param.opts[0] if getattr(param, "opts", None) and param.param_type_name == "option" else param.name
        message = f"{name}: {err.message.replace('Input should be', 'expected')}"
    return f"{command.removeprefix('vmsim').strip() or 'vmsim'}: {message}"


if __name__ == "__main__":
    main()
