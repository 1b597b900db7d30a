"""The ``vmsim`` command line: parse, call, print.  No model logic here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from sim.app.options import load_plugin_options, parse_set_options
from sim.schema.errors import InputError
from sim.schema.limits import MAX_RUNS

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Simulate the Linux vmalloc allocator.")


def _search_option(value: str | None) -> str | None:
    from sim.app.replay import SEARCH_MODES

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
    from sim.app.replay import replay_file

    report, lines = replay_file(trace, search=search, check=check, out=out)
    summary = sys.stdout
    if check:
        for _ in lines:  # the report fills as the lines are made
            pass
    elif out is None:
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
    from sim.app.churn import fit_mix as run_fit_mix

    result = run_fit_mix(workload, live, steps, search, seed)
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
    from sim.app.machine import zone_table, zone_table_json, zones_beside_real

    if zoneinfo is not None:
        result = zones_beside_real(zoneinfo, min_free_kbytes, dmesg, kernel, thp)
        _print_zones_beside_real(zoneinfo, kernel, result, json_out)
        return
    if min_free_kbytes is not None or dmesg is not None:
        raise InputError("--min-free-kbytes" if min_free_kbytes is not None else "--dmesg", None, "needs --zoneinfo")
    table = zone_table(ram, cpus, thp, kernel)
    if json_out:
        print(zone_table_json(table))
        return
    _print_zone_table(table)


def _print_zones_beside_real(path: Path, kernel: str, result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        import json

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


YesOption = Annotated[
    bool, typer.Option("--yes", help="Run even if the estimated computing time is above the bound (8 h).")
]
MaxRunsOption = Annotated[
    int,
    typer.Option("--max-runs", min=1, help="Refuse to plan more runs than this (strategies x replications x points)."),
]
SweepSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a value of the base scenario after the sweep file's own (repeatable): --set duration=1s.",
    ),
]
PluginOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--plugin",
        metavar="FILE.py",
        help="Load a Python file defining more split-object strategies (repeatable); workers load it too.",
    ),
]


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario or sweep YAML files.")],
    overrides: SetOption = None,
    max_runs: MaxRunsOption = MAX_RUNS,
    plugin: PluginOption = None,
) -> None:
    """Check scenario and sweep files: one line each, "FILE: ok (N runs ...)" or the first
    error as FILE:LINE: key.path: message (on standard error).  Exit 2 if any file is bad."""
    from sim.app.validate import validate_file

    load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    bad = 0
    for path in files:
        try:
            print(validate_file(path, sets, max_runs))
        except InputError as err:
            print(err, file=sys.stderr)
            bad += 1
    if bad:
        raise typer.Exit(2)


@app.command()
def profiles(
    name: Annotated[str | None, typer.Argument(help="One profile (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """The kernel profiles: for each, the upstream changes it models and those of its kernel
    it does not."""
    from sim.app.profiles import chosen_profiles, profile_record, profile_text

    chosen = chosen_profiles(name)
    if json_out:
        print(json.dumps([profile_record(p) for p in chosen], indent=1))
    else:
        print("\n".join(profile_text(p) for p in chosen), end="")


@app.command()
def schema(
    out: Annotated[Path | None, typer.Option(help="Write the schema here instead of standard output.")] = None,
) -> None:
    """Print the JSON Schema of scenario files (for editors: yaml-language-server, VS Code)."""
    from sim.app.schema import schema_text, write_schema

    if out is None:
        sys.stdout.write(schema_text())
    else:
        write_schema(out)


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
    from sim.app.run import execute_run, prepare_run, summary_table
    from sim.app.signals import Interrupted, stop_on_signals

    plugins = load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    plan = prepare_run(scenario_file, sets, seed=seed, out=out, max_runs=max_runs, plugins=plugins)
    scenario = plan.scenario
    print(f"{scenario.name}: {len(scenario.strategies)} strategies x {scenario.replications} replications, "
          f"{scenario.duration:g} s simulated, kernel {scenario.kernel}, root seed {plan.root_seed}"
          + (f", {jobs} workers" if jobs > 1 else ""), flush=True)  # fmt: skip
    finished = []

    def progress(result) -> None:
        row = result.row
        finished.append(row["run_id"])
        print(f"  {row['run_id']}: {row['status']} in {row['wall_seconds']:.1f} s wall", flush=True)

    try:
        with stop_on_signals():
            rows = execute_run(
                plan, jobs=jobs, sure=yes, argv=sys.argv, on_estimate=lambda line: print(line, flush=True),
                on_result=progress,
            )  # fmt: skip
    except Interrupted as stop:
        print(f"vmsim: stopped by {stop.name} after {len(finished)} of {plan.total} runs; nothing written "
              "(a run's folder is written when all its runs have finished)", file=sys.stderr)  # fmt: skip
        raise typer.Exit(stop.exit_code) from None
    for line in summary_table(rows, scenario.strategies):
        print(line)
    print(f"results: {plan.target}")


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
    from sim.app.figures import draw_figures

    load_plugin_options(plugin)  # the strategies' order and colours
    report = draw_figures(folder, run_id=run_id, x=x)
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
    overrides: SweepSetOption = None,
    plugin: PluginOption = None,
) -> None:
    """Run a sweep: every grid point x strategy x replication, in chunks on an executor; the
    folder gets part files, a status log (--resume skips what it has finished), and then the
    merged runs/events/timeseries.parquet and manifest.json.  Exit 1 if a worker crash left
    runs to retry.  Ctrl-C (or SIGTERM, SIGHUP) stops the workers at once and keeps what
    has finished for --resume."""
    from sim.app.progress import sweep_progress
    from sim.app.signals import Interrupted, stop_on_signals
    from sim.app.sweep import dry_run_lines, execute_sweep, prepare_sweep

    plugins = load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    request = prepare_sweep(
        sweep_file, sets, executor=executor, jobs=jobs, scheduler=scheduler, out=out, max_runs=max_runs,
        plugins=plugins, check_folder=not dry_run,
    )  # fmt: skip
    plan = request.plan
    runs = len(plan.runs())
    print(f"{plan.name}: {len(plan.points)} points x {len(plan.strategies)} strategies x {plan.replications} "
          f"replications = {runs} runs, root seed {plan.seed}")  # fmt: skip
    if dry_run:
        for line in dry_run_lines(plan):
            print(line)
        return
    print(f"{request.where()}, results {request.target}", flush=True)
    try:
        with stop_on_signals(), sweep_progress() as progress:
            outcome = execute_sweep(
                request, resume=resume, chunk=chunk, sure=yes, argv=sys.argv,
                on_estimate=lambda line: print(line, flush=True), progress=progress,
            )  # fmt: skip
    except Interrupted as stop:
        print(f"vmsim: stopped by {stop.name}; {request.kept_runs()} of {runs} runs finished are kept "
              f"in {request.target}; continue with: {request.resume_command()}", file=sys.stderr)  # fmt: skip
        raise typer.Exit(stop.exit_code) from None
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.statuses.items()))
    print(f"{outcome.total} runs: {counts}; {outcome.skipped} kept from before, {outcome.ran} run now "
          f"in {outcome.wall_seconds:.1f} s")  # fmt: skip
    print(f"results: {outcome.out} (runs {outcome.rows['runs']}, events {outcome.rows['events']}, "
          f"timeseries {outcome.rows['timeseries']} rows)")  # fmt: skip
    if outcome.crashed:
        print(f"{outcome.crashed} runs failed in a worker crash; rerun with --resume to retry them", file=sys.stderr)
        raise typer.Exit(1)


@app.command()
def boundary(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML: its base scenario, set, other factors and seed.")],
    factor: Annotated[str, typer.Option(help="The numeric key to bisect, e.g. machine.ram or workloads.0.workers.")],
    replications: Annotated[
        int | None, typer.Option(min=1, help="Runs per probe (default: the sweep's replications).")
    ] = None,
    steps: Annotated[int, typer.Option(min=0, help="Midpoints probed after the two ends, at most.")] = 4,
    low: Annotated[str | None, typer.Option(help="Low end, e.g. 160MiB (default: the sweep's smallest value).")] = None,
    high: Annotated[str | None, typer.Option(help="High end (default: the sweep's largest value).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Workers (default: the CPU count).")] = None,
    executor: Annotated[str, typer.Option(help="serial, process (the default) or dask.")] = "process",
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running Dask scheduler (with --executor dask).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write boundary.csv and boundary.json into this folder.")] = None,
    overrides: SweepSetOption = None,
    max_runs: MaxRunsOption = MAX_RUNS,
    plugin: PluginOption = None,
) -> None:
    """Find where split GFP_NOWAIT failures appear along one numeric factor of a sweep: bisect
    it (the two ends, then midpoints) in each combination of the sweep's other factors, every
    probe run for the replications under the nowait strategy; print the bracket (last value
    with no failure observed, first with failures) and each probe's rate per 10^6 vmalloc
    calls with its Wilson 95% interval."""
    import time

    from sim.app.boundary import boundary_lines, find_boundaries, write_boundary
    from sim.app.options import check_out_folder

    plugins = load_plugin_options(plugin)
    sets = parse_set_options(overrides)
    if out is not None:
        check_out_folder(out)
    wall0 = time.perf_counter()

    def progress(probes: int, runs: int) -> None:
        print(f"  {probes} probes, {runs} runs done ({time.perf_counter() - wall0:.0f} s)", flush=True)

    result = find_boundaries(
        sweep_file, factor, sets=sets, replications=replications, steps=steps, low=low, high=high,
        executor=executor, jobs=jobs, scheduler=scheduler, plugins=plugins, max_runs=max_runs, on_step=progress,
    )  # fmt: skip
    for line in boundary_lines(result):
        print(line)
    print(f"wall time {time.perf_counter() - wall0:.1f} s")
    if out is not None:
        for path in write_boundary(result, out):
            print(f"written: {path}")


@app.command()
def answer(
    quick: Annotated[
        bool, typer.Option(help="A reduced suite: first and last factor values, 1 replication, 1.5 s.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default results/answer-local, or results/answer-quick; "
            "results/answer is the committed copy: give it to update that)."
        ),
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
    from sim.app.answer import default_out, run_answer

    target = out or default_out(quick)
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
def judge(
    designs: Annotated[
        list[str],
        typer.Argument(
            help="Designs to judge, STRATEGY[@KERNEL]: preload@5.3, preload-gfp@5.5, mempool (a plug-in's).",
            metavar="DESIGN...",
        ),
    ],
    baseline: Annotated[str, typer.Option(help="The design the others are paired with.")] = "nowait@5.2",
    workloads: Annotated[
        str | None,
        typer.Option(
            help="Answer sweeps or sweep files (.yaml) to run, comma separated (default fork-ram,test-vmalloc; all: "
            "the suite but uptime-*).",
        ),
    ] = None,
    reps: Annotated[int, typer.Option(min=1, help="Replications of every point, on every side.")] = 4,
    duration: Annotated[
        str | None, typer.Option(help="Simulated time of every run, e.g. 2s (default: the sweeps').")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="Reduced sweeps: first and last factor values, 1.5 s (the replications stay).")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Output folder (default results/judge-local).")] = None,
    jobs: Annotated[
        int | None, typer.Option("-j", "--jobs", min=1, help="Worker processes (default: CPU count).")
    ] = None,
    executor: Annotated[str, typer.Option(help="serial, process or dask.")] = "process",
    plugin: PluginOption = None,
    overrides: SetOption = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Run nothing: write the report from the runs --out holds.")
    ] = False,
) -> None:
    """Judge designs against a baseline on answer workloads: every point of each workload's sweep
    runs for every design and the baseline with the same seeds (common random numbers); writes
    report.md (a verdict per workload from the paired differences: better, worse, or no
    detectable difference) and paired.csv."""
    from sim.app.judge import DEFAULT_OUT, run_judge

    plugins = load_plugin_options(plugin)

    def progress(name: str, done: int, failed: int, total: int) -> None:
        print(f"  {name}: {done}/{total} runs done, {failed} failed", flush=True)

    summary = run_judge(
        designs, baseline=baseline, workloads=workloads, reps=reps, duration=duration, out=out or DEFAULT_OUT,
        quick=quick, executor=executor, jobs=jobs, plugins=plugins, argv=sys.argv, progress=progress,
        sets=tuple(parse_set_options(overrides)), report_only=report_only,
    )  # fmt: skip
    for item in summary["verdicts"]:
        print(f"{item['design']} on {item['workload']}: {item['verdict']}")
    print(f"report: {summary['report']}")
    print(f"paired differences: {summary['csv']}")


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
    from sim.app import peer as use

    def log(line: str) -> None:
        print(line, flush=True)

    if target == "build-kernel":
        print(f"kernel: {use.build(source, out, log)}")
        return
    if source is not None:
        raise InputError("peer", None, f"unexpected argument {source}: give one scenario file")
    sets = parse_set_options(overrides)
    folder = use.run(Path(target), sets, kernel, modules, accel, out, replications, log)
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
    from sim.app.compare import compare as compare_folders

    text, target = compare_folders(model_dir, peer_dir, strategy, out)
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
