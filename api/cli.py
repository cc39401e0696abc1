"""The `hwnas` command line.

Every command prints a clear message and exits non-zero on bad input; none shows a traceback.
`--json` output goes to stdout unadorned so scripts can read it.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware neural architecture search: spaces, latency lookup tables, searches.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
reference_app = typer.Typer(help="Reference networks (MobileNetV1/V2/V3).", no_args_is_help=True)
space_app = typer.Typer(help="Search spaces.", no_args_is_help=True)
device_app = typer.Typer(help="Devices (targets with their own lookup tables).", no_args_is_help=True)
lut_app = typer.Typer(help="Latency lookup tables: profile, kit, import, check.", no_args_is_help=True)
app.add_typer(reference_app, name="reference")
app.add_typer(space_app, name="space")
app.add_typer(device_app, name="device")
app.add_typer(lut_app, name="lut")
db_app = typer.Typer(help="The database (HWNAS_DATABASE_URL).", no_args_is_help=True)
app.add_typer(db_app, name="db")

F = TypeVar("F", bound=Callable[..., Any])


def _describe_error(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in error.errors()]
        return "; ".join(parts)
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


def cli_errors(function: F) -> F:
    """Turn every failure into a one-line message and a non-zero exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: everything measured so far is stored; run again to resume")
            raise typer.Exit(130) from None
        except (ValueError, KeyError, LookupError, OSError) as error:
            err_console.print(f"[red]error[/]: {_describe_error(error)}")
            raise typer.Exit(2) from None
        except Exception as error:  # noqa: BLE001 - the last line of defence against a traceback
            from nas.store import StoreError

            if isinstance(error, StoreError):
                err_console.print(f"[red]error[/]: {error}")
                raise typer.Exit(2) from None
            err_console.print(f"[red]internal error[/] ({type(error).__name__}): {error}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar fed by (done, total, label) callbacks."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}", style="dim"),
        console=err_console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=None, label="")

        def update(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, label=label[:48])

        yield update


def sessions():  # noqa: ANN201 - sessionmaker type comes from nas.store
    from nas.latency import open_sessions

    return open_sessions()


# --- reference -------------------------------------------------------------------------------------


@reference_app.command("list")
@cli_errors
def reference_list(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """List the reference networks with their counts at width 1.0, 224x224."""
    from search_spaces import REFERENCE_NETS, count_spec, reference_spec

    rows = []
    for name, net in REFERENCE_NETS.items():
        counts = count_spec(reference_spec(name))
        rows.append({"name": name, "params": counts.params, "madds": counts.madds, "paper": net.paper})
    if as_json:
        print_json(rows)
        return
    table = Table("name", "params", "MAdds", "paper")
    for row in rows:
        table.add_row(row["name"], f"{row['params'] / 1e6:.2f}M", f"{row['madds'] / 1e6:.0f}M", row["paper"])
    console.print(table)


@reference_app.command("show")
@cli_errors
def reference_show(
    name: str,
    width: Annotated[float, typer.Option(help="width multiplier, 0.35-1.4")] = 1.0,
    resolution: Annotated[int, typer.Option(help="input resolution")] = 224,
    num_classes: Annotated[int, typer.Option(help="classifier outputs")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show one reference network: blocks, parameters and multiply-adds."""
    from search_spaces import REFERENCE_NETS, count_spec, reference_spec

    spec = reference_spec(name, width=width, resolution=resolution, num_classes=num_classes)
    counts = count_spec(spec)
    net = REFERENCE_NETS[name]
    payload = {
        "name": name,
        "width": width,
        "resolution": resolution,
        "params": counts.params,
        "madds": counts.madds,
        "published_params": net.published_params,
        "published_madds": net.published_madds,
        "hash": spec.content_hash(),
        "blocks": [block.to_string() for block in spec.blocks],
        "spec": spec.model_dump(mode="json"),
    }
    if as_json:
        print_json(payload)
        return
    console.print(f"[bold]{name}[/] width {width:g}, {resolution}x{resolution}  ({net.paper})")
    console.print(f"params {counts.params:,}   MAdds {counts.madds:,}   hash {spec.content_hash()}")
    table = Table("#", "layer key (block @ input HxWxC)")
    for index, key in enumerate(spec.block_keys()):
        table.add_row(str(index), key)
    console.print(table)


# --- space -----------------------------------------------------------------------------------------


def _space(name: str, resolutions: list[int] | None, widths: list[float] | None, num_classes: int | None):  # noqa: ANN202
    from search_spaces import get_space

    return get_space(name).with_options(resolutions=resolutions or None, widths=widths or None, num_classes=num_classes)


SpaceOpt = Annotated[str, typer.Option("--space", help="search space name (see `hwnas space list`)")]
ResolutionOpt = Annotated[
    list[int] | None, typer.Option("--resolution", "-r", help="restrict to these resolutions (repeatable)")
]
WidthOpt = Annotated[list[float] | None, typer.Option("--width", "-w", help="restrict to these widths (repeatable)")]
ClassesOpt = Annotated[int | None, typer.Option("--num-classes", help="classifier outputs (default: the space's)")]


@space_app.command("list")
@cli_errors
def space_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the search spaces."""
    from search_spaces import SPACES

    rows = [
        {
            "name": s.name,
            "num_architectures": s.size(),
            "num_block_keys": len(s.block_keys()),
            "description": s.description,
        }
        for s in SPACES.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "architectures", "block keys", "description")
    for row in rows:
        table.add_row(row["name"], f"{row['num_architectures']:.3e}", str(row["num_block_keys"]), row["description"])
    console.print(table)


@space_app.command("show")
@cli_errors
def space_show(
    name: str,
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a space's choices, its number of architectures and of block keys."""
    space = _space(name, resolution, width, num_classes)
    info = space.describe()
    if as_json:
        print_json(info)
        return
    console.print(f"[bold]{space.name}[/]: {space.description}")
    table = Table("stage", "out channels (x width)", "stride", "depths")
    for index, stage in enumerate(info["stages"]):
        table.add_row(str(index), str(stage["out_channels"]), str(stage["stride"]), str(stage["depths"]))
    console.print(table)
    for label in ("kernels", "expansions", "se", "activations", "widths", "resolutions"):
        console.print(f"{label:12} {info[label]}")
    console.print(f"architectures {info['num_architectures']:,} ({info['num_architectures']:.3e})")
    console.print(f"block keys    {info['num_block_keys']:,}   genome length {info['genome_length']}")


# --- device ----------------------------------------------------------------------------------------


def _parse_facts(facts: list[str] | None) -> dict[str, str]:
    parsed = {}
    for fact in facts or []:
        if "=" not in fact:
            raise ValueError(f"--fact must look like key=value, got {fact!r}")
        key, value = fact.split("=", 1)
        parsed[key.strip()] = value.strip()
    return parsed


@device_app.command("add")
@cli_errors
def device_add(
    name: str,
    threads: Annotated[int, typer.Option(min=1, max=256, help="ONNX Runtime intra-op threads")] = 1,
    remote: Annotated[bool, typer.Option("--remote", help="a device other than this machine (a phone)")] = False,
    fact: Annotated[list[str] | None, typer.Option("--fact", help="key=value, e.g. soc=Snapdragon 8 Gen 2")] = None,
    runtime_version: Annotated[str | None, typer.Option(help="remote device's onnxruntime version")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a device. Without --remote it is this machine at the given thread count."""
    from nas.latency import add_device

    device = add_device(
        sessions(), name, threads=threads, local=not remote, facts=_parse_facts(fact), runtime_version=runtime_version
    )
    if as_json:
        print_json(device.model_dump(mode="json"))
        return
    where = "remote" if remote else "this machine"
    console.print(
        f"added device [bold]{device.name}[/] ({where}, onnxruntime {device.runtime_version}, {threads} thread(s))"
    )


@device_app.command("list")
@cli_errors
def device_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List devices and the size of their lookup tables."""
    from nas.latency import is_this_machine, list_devices

    rows = [
        {**device.model_dump(mode="json"), "lut_entries": count, "this_machine": is_this_machine(device)}
        for device, count in list_devices(sessions())
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "runtime", "threads", "LUT entries", "this machine", "facts")
    for row in rows:
        facts = ", ".join(f"{k}={v}" for k, v in row["facts"].items() if k not in {"this_machine", "python"})
        table.add_row(
            row["name"],
            f"{row['runtime']} {row['runtime_version']}",
            str(row["threads"]),
            str(row["lut_entries"]),
            "yes" if row["this_machine"] else "no",
            facts[:60],
        )
    console.print(table)


# --- lut -------------------------------------------------------------------------------------------


@lut_app.command("profile")
@cli_errors
def lut_profile(
    device: str,
    space: SpaceOpt = "mobilenet_v3_large",
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    quick: Annotated[bool, typer.Option(help="fewer timed runs per key (tests, smoke runs)")] = False,
) -> None:
    """Measure every block key of a space on this machine; keys already measured are skipped."""
    from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
    from nas.latency import profile_device

    chosen = _space(space, resolution, width, num_classes)
    keys = chosen.block_keys()
    with progress_bar(f"profiling {device}") as update:
        summary = profile_device(sessions(), device, keys, QUICK_POLICY if quick else TimingPolicy(), update)
    console.print(
        f"{summary.wanted} keys: {summary.already_measured} already measured, {summary.measured_now} measured now "
        f"in {summary.seconds:.1f} s"
    )


@lut_app.command("export")
@cli_errors
def lut_export(device: str, output: Annotated[Path, typer.Option("--output", "-o")]) -> None:
    """Write the device's lookup table as versioned JSON."""
    from nas.latency import load_table

    table = load_table(sessions(), device)
    output.write_text(table.to_json())
    console.print(f"wrote {len(table)} entries to {output}")


@lut_app.command("kit")
@cli_errors
def lut_kit(
    device: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="zip file to write")],
    space: SpaceOpt = "mobilenet_v3_large",
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    missing_only: Annotated[bool, typer.Option(help="only keys the device's table lacks")] = True,
) -> None:
    """Build a profiling kit (ONNX per key, manifest, stand-alone runner) for a device off the network."""
    from nas.latency import create_kit

    chosen = _space(space, resolution, width, num_classes)
    with progress_bar(f"building kit for {device}") as update:
        manifest = create_kit(sessions(), device, chosen.block_keys(), output, missing_only, update)
    size = output.stat().st_size
    console.print(f"wrote {output} ({size / 1e6:.1f} MB, {len(manifest.models)} models, kit {manifest.kit_id})")
    console.print(f"on the device: unzip, `python runner.py`, then `hwnas lut import {device} results.json`")


@lut_app.command("import")
@cli_errors
def lut_import(
    device: str,
    results: Path,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate a kit's results file and store it; refused as a whole if anything is wrong."""
    from nas.latency import import_kit_results

    outcome = import_kit_results(sessions(), device, results.read_bytes())
    payload = {"stored": outcome.covered, "total": outcome.total, "coverage": outcome.coverage}
    if as_json:
        print_json(payload)
        return
    console.print(
        f"stored {outcome.covered} of the kit's {outcome.total} keys for {device} (coverage {outcome.coverage:.1%})"
    )


@lut_app.command("check")
@cli_errors
def lut_check(
    device: str,
    n: Annotated[int, typer.Option("--n", min=1, help="networks to score the predictor on")] = 200,
    n_calibration: Annotated[int, typer.Option(min=0, help="networks to fit the calibration on")] = 20,
    space: SpaceOpt = "mobilenet_v3_large",
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    seed: Annotated[int, typer.Option(help="which random networks")] = 0,
    quick: Annotated[bool, typer.Option(help="fewer timed runs per network")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Predicted vs measured end-to-end latency on random networks: calibrated predictor, raw sum, MAdds model."""
    from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy
    from nas.latency import check_device

    chosen = _space(space, resolution, width, num_classes)
    with progress_bar(f"measuring networks on {device}") as update:
        report = check_device(
            sessions(), device, chosen, n, n_calibration, seed, QUICK_POLICY if quick else TimingPolicy(), update
        )
    if as_json:
        print_json(report.to_dict())
        return
    print_report(report)


def print_report(report: Any) -> None:
    table = Table(
        # no_wrap + min_width: at 80 columns rich would otherwise cut "madds_linear" to "madds_line…"
        Column("predictor", no_wrap=True, min_width=max(len(score.name) for score in report.scores)),
        "within ±5%", "within ±10%", "RMSE (ms)", "mean |err|", "Spearman ρ",
        title=f"{report.device}: fitted on {report.n_calibration}, scored on {report.n_evaluation} networks",
    )  # fmt: skip
    for score in report.scores:
        table.add_row(
            score.name,
            f"{score.within_5pct:.1%}",
            f"{score.within_10pct:.1%}",
            f"{score.rmse_ms:.3f}",
            f"{score.mean_abs_pct_error:.1f}%",
            f"{score.spearman:.3f}",
        )
    console.print(table)


# --- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@cli_errors
def db_upgrade() -> None:
    """Create or migrate the database to the newest schema (safe to run repeatedly)."""
    from nas.store import database_revision, database_url, make_engine, upgrade_database

    engine = make_engine(database_url())
    upgrade_database(engine)
    console.print(
        f"database at revision {database_revision(engine)}: {engine.url.render_as_string(hide_password=True)}"
    )


# --- search and worker -----------------------------------------------------------------------------

search_app = typer.Typer(help="Searches (run by `hwnas worker` or in-process with `search run`).", no_args_is_help=True)
app.add_typer(search_app, name="search")


def _request_from_options(**fields: Any) -> Any:
    from nas.search.request import SearchRequest

    return SearchRequest(**{k: v for k, v in fields.items() if v is not None})


def _search_summary(public_id: str) -> dict[str, Any]:
    from nas.store import ArchitectureRepository, EventRepository, SearchRepository, session_scope

    with session_scope(sessions()) as session:
        row = SearchRepository(session).require(public_id)
        events = EventRepository(session).after(row.id, 0, 10_000)
        architectures = ArchitectureRepository(session).for_search(row.id)
        return {
            "id": row.public_id,
            "status": row.status,
            "phase": row.phase,
            "progress": row.progress,
            "trials_done": row.trials_done,
            "trials_total": row.trials_total,
            "over_budget_skipped": row.over_budget_skipped,
            "error": row.error,
            "result": row.result,
            "architectures": [
                {"id": a.public_id, "role": a.role, "accuracy": a.accuracy, "predicted_ms": a.predicted_ms,
                 "measured_ms": a.measured_ms, "artifact_dir": a.artifact_dir}
                for a in architectures
            ],
            "events": [f"{e.created_at:%H:%M:%S} {e.kind}: {e.message}" for e in events[-15:]],
        }  # fmt: skip


SearchDevice = Annotated[str, typer.Option("--device", help="device name (see `hwnas device list`)")]
Budget = Annotated[float, typer.Option("--budget-ms", help="latency budget on the device, ms")]
DatasetOpt = Annotated[str, typer.Option("--dataset", help="digits | synthetic[:opts] | path.npz | path.zip")]


@search_app.command("submit")
@cli_errors
def search_submit(
    device: SearchDevice,
    budget_ms: Budget,
    dataset: DatasetOpt = "digits",
    space: Annotated[str, typer.Option("--space")] = "mobilenet_v3_small",
    strategy: Annotated[str, typer.Option(help="random | evolution | pareto")] = "evolution",
    effort: Annotated[str, typer.Option(help="smoke | quick | default | thorough")] = "quick",
    resolution: Annotated[int, typer.Option(help="training and latency resolution")] = 32,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate and queue a search; `hwnas worker` runs it."""
    from nas.submission import submit_search

    request = _request_from_options(
        device=device, budget_ms=budget_ms, dataset=dataset, space=space, strategy=strategy, effort=effort,
        resolution=resolution, seed=seed,
    )  # fmt: skip
    public_id = submit_search(sessions(), request)
    if as_json:
        print_json({"id": public_id, "status": "queued"})
        return
    console.print(f"queued search [bold]{public_id}[/]; run `hwnas worker` to process it")


@search_app.command("show")
@cli_errors
def search_show(public_id: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A search's status, progress, latest events and result."""
    summary = _search_summary(public_id)
    if as_json:
        print_json(summary)
        return
    console.print(
        f"search {summary['id']}: [bold]{summary['status']}[/] ({summary['phase']}, {summary['progress']:.0%}, "
        f"{summary['trials_done']}/{summary['trials_total']} trials, {summary['over_budget_skipped']} skipped)"
    )
    for line in summary["events"]:
        console.print(f"  {line}", highlight=False)
    if summary["error"]:
        err_console.print(f"[red]error[/]: {summary['error']}")


def _run_here_with_progress(factory: Any, public_id: str) -> dict[str, Any]:
    """Run the queued search in this process (Ray Tune wants the main thread) while a thread follows
    its progress in the database and draws it."""
    import threading

    from nas.worker import run_worker

    done = threading.Event()

    def follow(update: Callable[[int, int, str], None]) -> None:
        while not done.wait(1.0):
            summary = _search_summary(public_id)
            last = summary["events"][-1].split(" ", 1)[1] if summary["events"] else summary["phase"]
            update(int(summary["progress"] * 100), 100, last)

    with progress_bar("searching") as update:
        watcher = threading.Thread(target=follow, args=(update,), daemon=True)
        watcher.start()
        try:
            run_worker(factory, once=True)
        finally:
            done.set()
            watcher.join()
        update(100, 100, "finished")
    return _search_summary(public_id)


def _print_outcome(summary: dict[str, Any]) -> None:
    if summary["status"] != "succeeded":
        raise ValueError(f"search {summary['id']} {summary['status']}: {summary['error']}")
    result = summary["result"]
    table = Table("", "accuracy", "predicted ms", "measured ms", "params", "MAdds", title=(
        f"budget {result['budget_ms']:.4g} ms; {result['trials']} trials, "
        f"{result['over_budget_skipped']} over-budget proposals never trained, {result['seconds']:.0f} s"))  # fmt: skip
    for label, row in (("hwnas winner", result["winner"]), ("MobileNetV3-Small (scaled)", result["baseline"])):
        if row is None:
            continue
        measured = "-" if row["measured_ms"] is None else f"{row['measured_ms']:.3f}"
        table.add_row(label, f"{row['accuracy']:.3f}", f"{row['predicted_ms']:.3f}", measured,
                      f"{row['params']:,}", f"{row['madds']:,}")  # fmt: skip
    console.print(table)
    console.print(f"winner artifacts (spec.json, model.onnx, weights.pt): {result['winner']['artifact_dir']}")


@search_app.command("run")
@cli_errors
def search_run(
    device: SearchDevice,
    budget_ms: Budget,
    dataset: DatasetOpt = "digits",
    space: Annotated[str, typer.Option("--space")] = "mobilenet_v3_small",
    strategy: Annotated[str, typer.Option()] = "evolution",
    effort: Annotated[str, typer.Option()] = "quick",
    resolution: Annotated[int, typer.Option()] = 32,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Submit a search and run it here, with a progress bar."""
    from nas.submission import submit_search

    request = _request_from_options(
        device=device, budget_ms=budget_ms, dataset=dataset, space=space, strategy=strategy, effort=effort,
        resolution=resolution, seed=seed,
    )  # fmt: skip
    factory = sessions()
    public_id = submit_search(factory, request)
    console.print(f"search {public_id} queued; running it in this process")
    _print_outcome(_run_here_with_progress(factory, public_id))


@app.command("worker")
@cli_errors
def worker_command(
    once: Annotated[bool, typer.Option(help="stop when the queue is empty")] = False,
    poll_s: Annotated[float, typer.Option(min=0.1)] = 2.0,
    stale_after_s: Annotated[
        float, typer.Option(min=0.01, help="re-claim a running search whose heartbeat is older than this")
    ] = 60.0,
) -> None:
    """Claim and run queued searches (HWNAS_DATABASE_URL, HWNAS_RAY_ADDRESS, HWNAS_ARTIFACT_DIR)."""
    import logging

    from nas.worker import new_worker_id, run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker_id = new_worker_id()
    console.print(f"worker {worker_id} polling for searches")
    ran = run_worker(sessions(), worker_id, once=once, poll_s=poll_s, stale_after_s=stale_after_s)
    console.print(f"worker {worker_id} ran {ran} search(es)")


# --- demo ------------------------------------------------------------------------------------------


@app.command("demo")
@cli_errors
def demo(
    device: Annotated[str, typer.Option(help="name for this machine's device")] = "this-machine-1t",
    threads: Annotated[int, typer.Option(min=1)] = 1,
    n: Annotated[int, typer.Option("--n", min=1, help="networks to score the predictor on")] = 20,
    effort: Annotated[str, typer.Option(help="search effort preset")] = "quick",
) -> None:
    """The main job on the embedded defaults: LUT + predictor report, then a search under a budget."""
    from latency_lut.kit_runner import TimingPolicy
    from latency_lut.profiler import measure_network
    from nas.latency import add_device, check_device, list_devices, profile_device
    from nas.submission import submit_search
    from search_spaces import get_space, reference_spec

    factory = sessions()
    if device not in {d.name for d, _ in list_devices(factory)}:
        add_device(factory, device, threads=threads)
        console.print(f"added device {device} (this machine, {threads} thread(s))")
    space = get_space("mobilenet_v3_large").with_options(resolutions=[224], widths=[1.0])
    console.print(f"[bold]1/3[/] profiling {len(space.block_keys())} block keys of {space.name} at 224x224")
    with progress_bar("profiling") as update:
        summary = profile_device(factory, device, space.block_keys(), TimingPolicy(), update)
    console.print(f"    {summary.measured_now} measured now, {summary.already_measured} already stored")
    console.print(f"[bold]2/3[/] measuring {n + 10} random networks end to end to score the predictor")
    with progress_bar("measuring") as update:
        report = check_device(factory, device, space, n=n, n_calibration=10, policy=TimingPolicy(), progress=update)
    print_report(report)

    reference = reference_spec("mobilenet_v3_small", width=1.0, resolution=32, num_classes=10)
    reference_ms = measure_network(reference, threads, TimingPolicy()).median_ms
    budget = round(0.6 * reference_ms, 4)
    console.print(
        f"[bold]3/3[/] search on scikit-learn's digits at 32 px, budget {budget} ms "
        f"(60% of MobileNetV3-Small 1.0's measured {reference_ms:.3f} ms on this machine)"
    )
    request = _request_from_options(device=device, budget_ms=budget, dataset="digits", effort=effort, resolution=32)
    public_id = submit_search(factory, request)
    _print_outcome(_run_here_with_progress(factory, public_id))
    console.print(f"details: `hwnas search show {public_id}`")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
