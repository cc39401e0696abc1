"""`hwnas search ...`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli import app
from api.cli_common import cli_errors, console, err_console, print_json, progress_bar, sessions

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
