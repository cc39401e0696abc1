"""`hwnas search ...`, `hwnas arch ...`, `hwnas dataset ...`: thin clients of the HTTP API.

They talk to the service at HWNAS_SERVER (default http://127.0.0.1:8000) with the key in
HWNAS_API_KEY, and print the server's own message on any error. `hwnas search run` is the exception:
it runs a search in this process on the database directly (HWNAS_DATABASE_URL), no server needed,
through the same services the API calls (`nas.services.searches`), as the operator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from api.cli import app
from api.cli_common import cli_errors, console, err_console, print_json, progress_bar, sessions

if TYPE_CHECKING:
    from api.client import ApiClient

search_app = typer.Typer(
    help="Searches through the service (HWNAS_SERVER, HWNAS_API_KEY); `search run` runs one here instead.",
    no_args_is_help=True,
)
arch_app = typer.Typer(help="Architectures searches exported: show, list, download, predict.", no_args_is_help=True)
dataset_app = typer.Typer(help="Datasets uploaded to the service (.npz or ImageFolder zip).", no_args_is_help=True)
app.add_typer(search_app, name="search")
app.add_typer(arch_app, name="arch")
app.add_typer(dataset_app, name="dataset")

FINISHED = ("succeeded", "failed", "cancelled")
# Events worth a line above the progress bar while watching (trials only move the bar).
NOTABLE_EVENTS = ("start", "resume", "profile", "calibrate", "search_done", "netadapt", "measure", "winner",
                  "baseline", "error", "done")  # fmt: skip

AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
SearchDevice = Annotated[str, typer.Option("--device", help="device name (see `hwnas device list`)")]
Budget = Annotated[float, typer.Option("--budget-ms", help="latency budget on the device, ms")]
DatasetOpt = Annotated[
    str, typer.Option("--dataset", help="digits | synthetic[:opts] | an uploaded dataset's id | a local .npz/.zip")
]
SpaceOpt = Annotated[str, typer.Option("--space", help="search space (see `hwnas space list`)")]
StrategyOpt = Annotated[str, typer.Option(help="random | evolution | pareto | supernet")]
EffortOpt = Annotated[str, typer.Option(help="smoke | quick | default | thorough")]
AugmentOpt = Annotated[
    str,
    typer.Option(
        help="auto | none | shift | shift_flip: random moves/zooms (and mirror images) of training batches; "
        "auto shifts only a train part smaller than an epoch (a few hundred images)"
    ),
]
ResolutionOpt = Annotated[
    int, typer.Option(help="deployment resolution: latency, budget, export and reported accuracy")
]
TrainResolutionOpt = Annotated[
    int | None, typer.Option(help="resolution the search's trials train at (default: min(resolution, 32))")
]


def _api() -> ApiClient:
    from api.client import ApiClient

    return ApiClient()


# --- the search request --------------------------------------------------------------------------


def _request_from_options(**fields: Any) -> Any:
    """A validated `SearchRequest` (for `search run`, which skips the server)."""
    from nas.search.request import SearchRequest

    return SearchRequest(**{k: v for k, v in fields.items() if v is not None})


def _looks_like_file(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith((".npz", ".zip"))


def upload_dataset(api: ApiClient, path: Path, name: str | None = None) -> dict[str, Any]:
    """POST the file to /v1/datasets (streamed); returns the dataset resource."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    with path.open("rb") as handle:
        response = api.request(
            "POST", "/v1/datasets", files={"file": (path.name, handle)}, data={"name": name} if name else None
        )
    return response.json()


def resolve_dataset_option(api: ApiClient, value: str, announce: Callable[[str], None]) -> str:
    """A local file is uploaded first and named by its new id; anything else goes to the server as is."""
    path = Path(value).expanduser()
    if path.is_file():
        dataset = upload_dataset(api, path)
        announce(
            f"uploaded {path.name} as dataset {dataset['id']} ({dataset['kind']}, {dataset['num_images']} images, "
            f"{dataset['num_classes']} classes)"
        )
        return dataset["id"]
    if _looks_like_file(value):
        raise ValueError(f"--dataset {value!r}: no such file (a local .npz or ImageFolder .zip is uploaded first)")
    return value


@search_app.command("submit")
@cli_errors
def search_submit(
    device: SearchDevice,
    budget_ms: Budget,
    dataset: DatasetOpt = "digits",
    space: SpaceOpt = "mobilenet_v3_small",
    strategy: StrategyOpt = "evolution",
    effort: EffortOpt = "quick",
    resolution: ResolutionOpt = 32,
    train_resolution: TrainResolutionOpt = None,
    seed: Annotated[int, typer.Option()] = 0,
    augment: AugmentOpt = "auto",
    width: Annotated[list[float] | None, typer.Option("--width", "-w", help="width multiplier (repeatable)")] = None,
    netadapt: Annotated[bool, typer.Option(help="shrink the best candidate with NetAdapt")] = True,
    baseline: Annotated[bool, typer.Option(help="train MobileNetV3-Small scaled to the budget too")] = True,
    watch: Annotated[bool, typer.Option("--watch", help="follow it until it finishes")] = False,
    as_json: AsJson = False,
) -> None:
    """Submit a search to the service (a local dataset file is uploaded first)."""
    with _api() as api:
        body: dict[str, Any] = {
            "device": device,
            "budget_ms": budget_ms,
            "dataset": resolve_dataset_option(api, dataset, err_console.print),
            "space": space,
            "strategy": strategy,
            "effort": effort,
            "resolution": resolution,
            "seed": seed,
            "augment": augment,
            "netadapt": netadapt,
            "baseline": baseline,
        }
        if width:
            body["widths"] = width
        if train_resolution is not None:
            body["train_resolution"] = train_resolution
        search = api.post_json("/v1/searches", body)
        if watch:
            err_console.print(f"search {search['id']} {search['status']}; following it")
            search = follow_search(api, search["id"], quiet=as_json)
    if as_json:
        print_json(search)
    elif watch:
        print_outcome(search)
    else:
        console.print(
            f"search [bold]{search['id']}[/] {search['status']} (budget {search['budget_ms']:g} ms on {device}); "
            f"follow it with `hwnas search watch {search['id']}`"
        )
    if watch:
        _exit_for(search)


# --- following a search ----------------------------------------------------------------------------


@dataclass
class SseEvent:
    event: str
    data: Any
    id: int | None


def iter_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Server-Sent Events from a stream of lines (comments and `retry:` are skipped)."""
    event, data, event_id = "message", [], None
    for line in lines:
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                yield SseEvent(event, payload, event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and value.isdigit():
            event_id = int(value)


def follow_search(api: ApiClient, search_id: str, quiet: bool = False, max_reconnects: int = 20) -> dict[str, Any]:
    """Follow /v1/searches/{id}/events with a progress bar until the search finishes; returns the search.

    A dropped connection is resumed from the last event id (Last-Event-ID), so nothing is shown twice.
    """
    import httpx

    from api.client import ApiError, raise_for_problem

    last_id: int | None = None
    failures = 0
    with progress_bar(f"search {search_id[:8]}") as update:

        def show(status: dict[str, Any]) -> None:
            label = f"{status['phase']} {status['trials_done']}/{status['trials_total']} trials"
            update(int(round(1000 * status["progress"])), 1000, label)

        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            try:
                with api.http.stream("GET", f"/v1/searches/{search_id}/events", headers=headers) as response:
                    if not response.is_success:
                        response.read()
                        raise_for_problem(response)
                    for message in iter_sse(response.iter_lines()):
                        failures = 0
                        if message.id is not None:
                            last_id = message.id
                        if message.event in ("progress", "end") and isinstance(message.data, dict):
                            if message.data.get("status") == "deleted":
                                raise ValueError(f"search {search_id} was deleted while being watched")
                            show(message.data)
                            if message.event == "end":
                                return api.get_json(f"/v1/searches/{search_id}")
                        elif message.event in NOTABLE_EVENTS and not quiet and isinstance(message.data, dict):
                            line = f"  [{message.event}] {message.data.get('message', '')}"
                            err_console.print(line, markup=False, highlight=False)
            except (httpx.TransportError, httpx.StreamError) as error:
                failures += 1
                if failures > max_reconnects:
                    raise ApiError(0, f"lost the event stream of search {search_id}: {error}") from None
                time.sleep(min(5.0, 0.5 * failures))
                continue
            # The server closed the stream without `end` (e.g. it restarted): resume.
            failures += 1
            if failures > max_reconnects:
                raise ApiError(0, f"the event stream of search {search_id} keeps closing early")
            time.sleep(min(5.0, 0.5 * failures))


def _exit_for(search: dict[str, Any]) -> None:
    if search["status"] == "failed":
        raise ValueError(f"search {search['id']} failed: {search.get('error')}")
    if search["status"] == "cancelled":
        err_console.print(f"search {search['id']} was cancelled; its candidates are kept")
        raise typer.Exit(1)


@search_app.command("watch")
@cli_errors
def search_watch(search_id: str, as_json: AsJson = False) -> None:
    """Follow a search live (progress bar, notable events) until it finishes; then winner vs baseline."""
    with _api() as api:
        search = follow_search(api, search_id, quiet=as_json)
    if as_json:
        print_json(search)
    else:
        print_outcome(search)
    _exit_for(search)


# --- reading ---------------------------------------------------------------------------------------


def _status_line(search: dict[str, Any]) -> str:
    return (
        f"search {search['id']}: [bold]{search['status']}[/] ({search['phase']}, {search['progress']:.0%}, "
        f"{search['trials_done']}/{search['trials_total']} trials, {search['over_budget_skipped']} over budget "
        f"never trained); budget {search['budget_ms']:g} ms on {escape(search['device'])}, {search['space']}, "
        f"dataset {escape(search['dataset'])}"
    )


def print_outcome(search: dict[str, Any]) -> None:
    """The winner beside the baseline (a search resource from the API, or `search run`'s summary)."""
    result = search.get("result")
    if search["status"] != "succeeded" or not result:
        error = f": {search['error']}" if search.get("error") else ""
        console.print(f"search {search['id']} {search['status']}{error}", markup=False)
        return
    label = Column("", no_wrap=True, min_width=len("MobileNetV3-Small (scaled)"))
    table = Table(label, "accuracy", "predicted ms", "measured ms", "params", "MAdds", title=(
        f"budget {result['budget_ms']:.4g} ms; {result['trials']} trials, "
        f"{result['over_budget_skipped']} over-budget proposals never trained, {result['seconds']:.0f} s"))  # fmt: skip
    for label, row in (("hwnas winner", result.get("winner")), ("MobileNetV3-Small (scaled)", result.get("baseline"))):
        if not row:
            continue
        measured = "-" if row.get("measured_ms") is None else f"{row['measured_ms']:.3f}"
        table.add_row(label, f"{row['accuracy']:.3f}", f"{row['predicted_ms']:.3f}", measured,
                      f"{row['params']:,}", f"{row['madds']:,}")  # fmt: skip
    console.print(table)
    winner = result["winner"]
    if winner.get("artifact_dir"):
        console.print(
            f"winner artifacts (spec.json, model.onnx, model_uint8.onnx, weights.pt): {winner['artifact_dir']}"
        )
    elif winner.get("architecture_id"):
        console.print(f"download the winner: `hwnas arch download {winner['architecture_id']} -o DIR`")


# Kept under its old name for callers of the previous module.
_print_outcome = print_outcome


@search_app.command("show")
@cli_errors
def search_show(search_id: str, as_json: AsJson = False) -> None:
    """A search's status, progress, latest events and result."""
    with _api() as api:
        search = api.get_json(f"/v1/searches/{search_id}")
        events = api.get_json(f"/v1/searches/{search_id}/events", params={"format": "json", "limit": 1000})
    if as_json:
        print_json({**search, "events": events[-50:]})
        return
    console.print(_status_line(search))
    for event in events[-15:]:
        line = f"  {event['created_at'][11:19]} {event['kind']}: {event['message']}"
        console.print(line, markup=False, highlight=False)
    if search["status"] == "succeeded":
        print_outcome(search)
    if search.get("error"):
        err_console.print(f"[red]error[/]: {escape(search['error'])}")


@search_app.command("list")
@cli_errors
def search_list(
    status: Annotated[list[str] | None, typer.Option("--status", help="only these statuses (repeatable)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: AsJson = False,
) -> None:
    """Your searches (an admin key: everyone's), newest first."""
    with _api() as api:
        page = api.get_json("/v1/searches", params={"status": status or [], "limit": limit, "offset": offset})
    if as_json:
        print_json(page)
        return
    table = Table("id", "status", "phase", "progress", "device", "budget ms", "dataset", "created",
                  title=f"{len(page['items'])} of {page['total']} searches")  # fmt: skip
    for search in page["items"]:
        table.add_row(search["id"], search["status"], search["phase"], f"{search['progress']:.0%}", search["device"],
                      f"{search['budget_ms']:g}", search["dataset"], str(search["created_at"])[:19])  # fmt: skip
    console.print(table)


@search_app.command("cancel")
@cli_errors
def search_cancel(search_id: str, as_json: AsJson = False) -> None:
    """Cancel a search: a queued one at once, a running one between trials (its candidates are kept)."""
    with _api() as api:
        search = api.post_json(f"/v1/searches/{search_id}/cancel")
    if as_json:
        print_json(search)
        return
    if search["status"] == "cancelled":
        console.print(f"search {search_id} cancelled")
    else:
        console.print(f"search {search_id}: cancel requested; it stops after the trials running now")


def _candidate_table(items: list[dict[str, Any]], title: str) -> Table:
    table = Table("arch", "phase", "status", "accuracy", "predicted ms", "params", "MAdds", "spec", title=title)
    for c in items:
        accuracy = "-" if c["accuracy"] is None else f"{c['accuracy']:.3f}"
        table.add_row(c["arch_hash"][:10], c["phase"], c["status"], accuracy, f"{c['predicted_ms']:.3f}",
                      f"{c['params']:,}", f"{c['madds']:,}", c["spec"][:60])  # fmt: skip
    return table


@search_app.command("candidates")
@cli_errors
def search_candidates(
    search_id: str,
    sort: Annotated[str, typer.Option(help="accuracy | predicted_ms | created_at; '-' first: descending")] = (
        "-accuracy"
    ),
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    phase: Annotated[list[str] | None, typer.Option(help="search | netadapt | final | baseline (repeatable)")] = None,
    status: Annotated[list[str] | None, typer.Option(help="completed | pruned | over_budget | failed")] = None,
    as_json: AsJson = False,
) -> None:
    """A page of a search's candidates (most accurate first by default)."""
    params = {"sort": sort, "limit": limit, "offset": offset, "phase": phase or [], "status": status or []}
    with _api() as api:
        page = api.get_json(f"/v1/searches/{search_id}/candidates", params=params)
    if as_json:
        print_json(page)
        return
    console.print(_candidate_table(page["items"], f"{len(page['items'])} of {page['total']} candidates ({sort})"))


@search_app.command("pareto")
@cli_errors
def search_pareto(search_id: str, as_json: AsJson = False) -> None:
    """The accuracy / latency Pareto front of a search's candidates, fastest first."""
    with _api() as api:
        front = api.get_json(f"/v1/searches/{search_id}/pareto")
    if as_json:
        print_json(front)
        return
    console.print(_candidate_table(front["items"], f"Pareto front (budget {front['budget_ms']:g} ms)"))


# --- running a search here, on the database directly -----------------------------------------------


def _search_summary(factory: Any, public_id: str) -> dict[str, Any]:
    """The search as the API shows it, its last events as lines, and (the operator runs this on the
    server) where the winner's and the baseline's files were written."""
    from nas.services import architectures, searches

    summary = searches.get(factory, public_id, None).model_dump(mode="json")
    events = searches.events(factory, public_id, None, limit=10_000)
    summary["events"] = [f"{e.created_at:%H:%M:%S} {e.kind}: {e.message}" for e in events[-15:]]
    result = summary.get("result") or {}
    for role, directory in architectures.artifact_dirs(factory, public_id).items():
        if isinstance(result.get(role), dict):
            result[role]["artifact_dir"] = str(directory)
    return summary


def _run_here_with_progress(factory: Any, public_id: str) -> dict[str, Any]:
    """Run the queued search in this process (Ray Tune wants the main thread) while a thread follows
    its progress in the database and draws it."""
    import threading

    from nas.worker import run_worker

    done = threading.Event()

    def follow(update: Callable[[int, int, str], None]) -> None:
        while not done.wait(1.0):
            summary = _search_summary(factory, public_id)
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
    return _search_summary(factory, public_id)


@search_app.command("run")
@cli_errors
def search_run(
    device: SearchDevice,
    budget_ms: Budget,
    dataset: Annotated[str, typer.Option("--dataset", help="digits | synthetic[:opts] | path.npz | path.zip")] = (
        "digits"
    ),
    space: SpaceOpt = "mobilenet_v3_small",
    strategy: StrategyOpt = "evolution",
    effort: EffortOpt = "quick",
    resolution: ResolutionOpt = 32,
    train_resolution: TrainResolutionOpt = None,
    seed: Annotated[int, typer.Option()] = 0,
    augment: AugmentOpt = "auto",
) -> None:
    """Run a search in this process on the database directly (HWNAS_DATABASE_URL), with a progress bar."""
    from nas.services import searches

    request = _request_from_options(
        device=device, budget_ms=budget_ms, dataset=dataset, space=space, strategy=strategy, effort=effort,
        resolution=resolution, train_resolution=train_resolution, seed=seed, augment=augment,
    )  # fmt: skip
    factory = sessions()
    public_id = searches.submit(factory, request, None).id
    console.print(f"search {public_id} queued; running it in this process")
    summary = _run_here_with_progress(factory, public_id)
    if summary["status"] != "succeeded":
        raise ValueError(f"search {summary['id']} {summary['status']}: {summary['error']}")
    print_outcome(summary)


# --- architectures ---------------------------------------------------------------------------------

ARTIFACT_FILES = {
    "spec": "spec.json",
    "onnx": "model.onnx",
    "onnx_uint8": "model_uint8.onnx",
    "weights": "weights.pt",
}


@arch_app.command("show")
@cli_errors
def arch_show(architecture_id: str, as_json: AsJson = False) -> None:
    """An architecture: role, search, latency, accuracy, blocks."""
    with _api() as api:
        arch = api.get_json(f"/v1/architectures/{architecture_id}")
    if as_json:
        print_json(arch)
        return
    measured = "-" if arch["measured_ms"] is None else f"{arch['measured_ms']:.3f}"
    accuracy = "-" if arch["accuracy"] is None else f"{arch['accuracy']:.3f}"
    console.print(
        f"architecture {arch['id']} ([bold]{arch['role']}[/] of search {arch['search_id']}): accuracy {accuracy}, "
        f"predicted {arch['predicted_ms']:.3f} ms, measured {measured} ms, {arch['params']:,} params, "
        f"{arch['madds']:,} MAdds"
    )
    console.print(arch["spec_string"], highlight=False)


@arch_app.command("list")
@cli_errors
def arch_list(
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: AsJson = False,
) -> None:
    """Your architectures, newest first."""
    with _api() as api:
        page = api.get_json("/v1/architectures", params={"limit": limit, "offset": offset})
    if as_json:
        print_json(page)
        return
    table = Table("id", "role", "search", "accuracy", "predicted ms", "measured ms", "params",
                  title=f"{len(page['items'])} of {page['total']} architectures")  # fmt: skip
    for a in page["items"]:
        accuracy = "-" if a["accuracy"] is None else f"{a['accuracy']:.3f}"
        measured = "-" if a["measured_ms"] is None else f"{a['measured_ms']:.3f}"
        table.add_row(a["id"], a["role"], a["search_id"] or "-", accuracy, f"{a['predicted_ms']:.3f}", measured,
                      f"{a['params']:,}")  # fmt: skip
    console.print(table)


@arch_app.command("download")
@cli_errors
def arch_download(
    architecture_id: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="directory to write into (created if missing)")],
    as_json: AsJson = False,
) -> None:
    """Download spec.json, model.onnx, model_uint8.onnx and weights.pt of an architecture into a directory.

    Every file the architecture has (older exports have no model_uint8.onnx)."""
    written: dict[str, Any] = {}
    with _api() as api:
        arch = api.get_json(f"/v1/architectures/{architecture_id}")  # 404 before any file is created
        output.mkdir(parents=True, exist_ok=True)
        for kind, name in ARTIFACT_FILES.items():
            if kind not in arch["files"]:
                continue
            target = output / name
            partial = output / f".{name}.part"
            try:
                size = api.download(arch["links"][kind], partial)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
            written[name] = {"path": str(target), "bytes": size}
    if as_json:
        print_json({"id": architecture_id, "files": written})
        return
    for info in written.values():
        console.print(f"{info['path']}  ({info['bytes']:,} bytes)")


# --- datasets --------------------------------------------------------------------------------------


@dataset_app.command("upload")
@cli_errors
def dataset_upload(
    path: Path,
    name: Annotated[str | None, typer.Option(help="a name to show (default: the file's)")] = None,
    as_json: AsJson = False,
) -> None:
    """Upload an .npz (x: uint8 images, y: labels) or an ImageFolder zip; prints its id for --dataset."""
    with _api() as api:
        dataset = upload_dataset(api, path, name)
    if as_json:
        print_json(dataset)
        return
    console.print(
        f"dataset [bold]{dataset['id']}[/] ({dataset['kind']}, {dataset['num_images']} images, "
        f"{dataset['num_classes']} classes, shape {dataset['image_shape']}); use it as --dataset {dataset['id']}"
    )


@dataset_app.command("list")
@cli_errors
def dataset_list(as_json: AsJson = False) -> None:
    """Your uploaded datasets, newest first."""
    with _api() as api:
        page = api.get_json("/v1/datasets", params={"limit": 200})
    if as_json:
        print_json(page)
        return
    table = Table("id", "name", "kind", "images", "classes", "shape", "bytes", title=f"{page['total']} datasets")
    for d in page["items"]:
        table.add_row(d["id"], d["name"], d["kind"], str(d["num_images"]), str(d["num_classes"]),
                      "x".join(map(str, d["image_shape"])), f"{d['size_bytes']:,}")  # fmt: skip
    console.print(table)
