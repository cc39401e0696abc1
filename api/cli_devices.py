"""`hwnas device ...`, `hwnas lut ...` and `hwnas agent`: thin clients of the service's /v1/devices API.

They talk to HWNAS_SERVER (default http://127.0.0.1:8000, or --server) with the key in HWNAS_API_KEY.
`hwnas lut check` is the exception: it measures whole networks on this machine and writes them to the
database (HWNAS_DATABASE_URL) directly.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer
from rich.table import Column, Table

from api.cli import ClassesOpt, ResolutionOpt, SpaceOpt, WidthOpt, _space, app, device_app, lut_app
from api.cli_common import cli_errors, console, print_json, progress_bar, sessions
from api.client import ApiClient
from nas.settings import machine_id

ServerOpt = Annotated[
    str | None, typer.Option("--server", help="the hwnas service (default: $HWNAS_SERVER or http://127.0.0.1:8000)")
]
BatchOpt = Annotated[int, typer.Option("--batch", min=1, max=1000, help="keys measured per posted batch")]

# Building a kit for a large space exports one ONNX model per key on the server: give it time.
KIT_TIMEOUT_S = 900.0


def _device_path(name: str) -> str:
    from latency_lut.agent import device_path

    return device_path(name)


def _download_kit(server: str | None, url: str, output: Path) -> tuple[int, Any]:
    """Download a kit zip to `output` (via a partial file, so a failed download leaves nothing);
    (size in bytes, its manifest)."""
    from latency_lut.kit import read_manifest_from_kit

    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        with ApiClient(server, timeout=KIT_TIMEOUT_S) as api:
            size = api.download(url, partial)
        manifest = read_manifest_from_kit(partial)
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return size, manifest


def _upload_results(
    server: str | None, url: str, results: Path, as_json: bool, describe: Callable[[dict[str, Any]], str]
) -> None:
    """POST a kit runner's results file; print the server's answer (as JSON, or `describe`d)."""
    content = results.read_bytes()
    with ApiClient(server) as api:
        answer = api.request("POST", url, files={"file": (results.name, content, "application/json")}).json()
    if as_json:
        print_json(answer)
    else:
        console.print(describe(answer))


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
    remote: Annotated[
        bool, typer.Option("--remote", help="a device other than the server's machine (a phone)")
    ] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="this machine (the one running the command: HWNAS_MACHINE_ID), written to the database "
            "(HWNAS_DATABASE_URL) directly; run it where the workers that will measure the device run",
        ),
    ] = False,
    fact: Annotated[list[str] | None, typer.Option("--fact", help="key=value, e.g. soc=Snapdragon 8 Gen 2")] = None,
    runtime_version: Annotated[str | None, typer.Option(help="remote device's onnxruntime version")] = None,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a device. Without --remote it is the server's machine at the given thread count; with
    --local it is the machine running this command (e.g. a worker's), registered by the operator."""
    if local and (remote or runtime_version is not None or server is not None):
        raise ValueError("--local registers this machine in the database: no --remote, --runtime-version or --server")
    if local:
        from nas.services import devices

        device = devices.register(
            sessions(), name, viewer=None, threads=threads, local=True, facts=_parse_facts(fact)
        ).model_dump(mode="json")
    else:
        body: dict[str, Any] = {"name": name, "threads": threads, "local": not remote, "facts": _parse_facts(fact)}
        if runtime_version is not None:
            body["runtime_version"] = runtime_version
        with ApiClient(server) as api:
            device = api.post_json("/v1/devices", body)
    if as_json:
        print_json(device)
        return
    where = f"this machine, {machine_id()}" if local else "the server's machine" if device["local"] else "remote"
    console.print(
        f"added device [bold]{device['name']}[/] ({where}, onnxruntime {device['runtime_version']}, "
        f"{device['threads']} thread(s))"
    )


@device_app.command("list")
@cli_errors
def device_list(server: ServerOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List devices and the size of their lookup tables."""
    with ApiClient(server) as api:
        rows = api.get_json("/v1/devices")
    if as_json:
        print_json(rows)
        return
    table = Table("name", "runtime", "threads", "LUT entries", "local", "facts")
    for row in rows:
        facts = ", ".join(f"{k}={v}" for k, v in row["facts"].items() if k not in {"this_machine", "python"})
        table.add_row(
            row["name"],
            f"{row['runtime']} {row['runtime_version']}",
            str(row["threads"]),
            str(row["lut_entries"]),
            "yes" if row["local"] else "no",
            facts[:60],
        )
    console.print(table)


# --- the agent -------------------------------------------------------------------------------------


@contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """An event SIGTERM sets (the agent then posts what it measured and stops); Ctrl-C stays an interrupt."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_agent(
    server: str | None,
    device: str,
    space: str,
    resolution: list[int] | None,
    width: list[float] | None,
    num_classes: int | None,
    batch: int,
    threads: int | None,
    quick: bool,
    max_batches: int | None,
    require_this_machine: bool,
    networks: bool = False,
    serve_jobs: bool = False,
    max_idle_s: float | None = None,
) -> Any:
    from latency_lut.agent import run_agent
    from latency_lut.kit_runner import QUICK_POLICY, TimingPolicy

    with ApiClient(server) as api, _stop_on_sigterm() as stop, progress_bar(f"profiling {device}") as update:
        return run_agent(
            api,
            device,
            space=space,
            resolution=resolution,
            width=width,
            num_classes=num_classes,
            batch=batch,
            threads=threads,
            policy=QUICK_POLICY if quick else TimingPolicy(),
            stop=stop,
            max_batches=max_batches,
            require_machine=machine_id() if require_this_machine else None,
            progress=update,
            networks=networks,
            serve_jobs=serve_jobs,
            max_idle_s=max_idle_s,
        )


def _print_agent_summary(summary: Any) -> None:
    console.print(
        f"{summary.total_keys} keys: {summary.total_keys - summary.missing_at_start} already measured, "
        f"{summary.measured} measured now in {summary.seconds:.1f} s"
    )
    if summary.missing_now:
        console.print(f"{summary.missing_now} key(s) still missing; run again to continue (nothing is measured twice)")
    if summary.networks_measured or summary.jobs_answered:
        console.print(
            f"{summary.networks_measured} calibration network(s) measured, {summary.jobs_answered} job(s) answered"
        )


@app.command("agent")
@cli_errors
def agent(
    device: Annotated[str, typer.Option("--device", help="the device this agent runs on (registered name)")],
    server: ServerOpt = None,
    space: SpaceOpt = "mobilenet_v3_large",
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    batch: BatchOpt = 20,
    threads: Annotated[
        int | None, typer.Option(min=1, max=256, help="expected thread count; refused if the device's differs")
    ] = None,
    quick: Annotated[bool, typer.Option(help="fewer timed runs per key (smoke runs)")] = False,
    max_batches: Annotated[int | None, typer.Option(min=1, help="stop after this many batches")] = None,
    networks: Annotated[
        bool, typer.Option(help="then measure the space's calibration networks the device lacks (calibrates it)")
    ] = True,
    serve_jobs: Annotated[
        bool, typer.Option("--serve-jobs", help="then keep answering measurement jobs (searches waiting for it)")
    ] = False,
    max_idle_s: Annotated[
        float | None, typer.Option(min=0, help="with --serve-jobs: stop after this long without a job")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """On a device that can reach the server: measure the keys its lookup table lacks, batch by batch,
    then the calibration networks it lacks, then (--serve-jobs) the networks searches ask it to time.

    Stop it at any time (Ctrl-C, SIGTERM) and run it again: stored batches are never measured twice.
    """
    summary = _run_agent(
        server,
        device,
        space,
        resolution,
        width,
        num_classes,
        batch,
        threads,
        quick,
        max_batches,
        False,
        networks=networks,
        serve_jobs=serve_jobs,
        max_idle_s=max_idle_s,
    )
    if as_json:
        print_json({**summary.__dict__, "finished": summary.finished})
        return
    _print_agent_summary(summary)


# --- lut -------------------------------------------------------------------------------------------


@lut_app.command("profile")
@cli_errors
def lut_profile(
    device: str,
    server: ServerOpt = None,
    space: SpaceOpt = "mobilenet_v3_large",
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    batch: BatchOpt = 20,
    quick: Annotated[bool, typer.Option(help="fewer timed runs per key (tests, smoke runs)")] = False,
) -> None:
    """Measure every block key of a space on this machine (the agent, here); keys already measured are skipped."""
    _space(space, resolution, width, num_classes)  # a bad space fails here, before the server is asked
    summary = _run_agent(server, device, space, resolution, width, num_classes, batch, None, quick, None, True)
    _print_agent_summary(summary)


@lut_app.command("export")
@cli_errors
def lut_export(device: str, output: Annotated[Path, typer.Option("--output", "-o")], server: ServerOpt = None) -> None:
    """Write the device's lookup table as versioned JSON."""
    from latency_lut.device import Device
    from latency_lut.table import LatencyTable, LutEntry

    path = _device_path(device)
    entries: dict[str, LutEntry] = {}
    with ApiClient(server) as api:
        info = api.get_json(path)
        while True:
            page = api.get_json(f"{path}/lut", params={"limit": 5000, "offset": len(entries)})
            for e in page["entries"]:
                entries[e["key"]] = LutEntry(e["median_ms"], e["iqr_ms"], e["runs"], e["runtime_version"], e["source"])
            if not page["entries"] or len(entries) >= page["total"]:
                break
    fields = ("name", "runtime", "runtime_version", "execution_provider", "threads", "facts")
    table = LatencyTable(Device(**{k: info[k] for k in fields}), entries)
    output.write_text(table.to_json())
    console.print(f"wrote {len(table)} entries to {output}")


@lut_app.command("kit")
@cli_errors
def lut_kit(
    device: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="zip file to write")],
    server: ServerOpt = None,
    space: SpaceOpt = "mobilenet_v3_large",
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    num_classes: ClassesOpt = None,
    quick: Annotated[bool, typer.Option(help="fewer timed runs per model (smoke runs)")] = False,
    networks: Annotated[
        bool, typer.Option(help="also the space's calibration networks the device lacks (calibrates it)")
    ] = True,
) -> None:
    """Download a profiling kit (ONNX per missing key, manifest, stand-alone runner) for a device off the network."""
    from latency_lut.agent import space_params

    params = {**space_params(space, resolution, width, num_classes), "quick": quick, "networks": networks}
    console.print(f"the server is building the kit for {device} (one ONNX model per missing key)...")
    size, manifest = _download_kit(server, f"{_device_path(device)}/kit?{urlencode(params, doseq=True)}", output)
    console.print(f"wrote {output} ({size / 1e6:.1f} MB, {len(manifest.models)} models, kit {manifest.kit_id})")
    console.print(f"on the device: unzip, `python runner.py`, then `hwnas lut import {device} results.json`")


@lut_app.command("import")
@cli_errors
def lut_import(
    device: str,
    results: Path,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upload a kit's results file: validated by the server, refused as a whole if anything is wrong."""
    _upload_results(
        server,
        f"{_device_path(device)}/lut",
        results,
        as_json,
        lambda answer: (
            f"stored {answer['kit']['covered']} of the kit's {answer['kit']['total']} keys for {device} "
            f"(coverage {answer['kit']['coverage']:.1%}); its table now holds {answer['lut_entries']} entries"
        ),
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
    from nas.services.calibration import check_this_machine

    chosen = _space(space, resolution, width, num_classes)
    with progress_bar(f"measuring networks on {device}") as update:
        report = check_this_machine(
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


# --- measurement jobs (a search asking a remote device to time its winner) ---------------------------


@device_app.command("jobs")
@cli_errors
def device_jobs(
    device: str,
    status: Annotated[str | None, typer.Option(help="pending, done or cancelled (default: all)")] = None,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The device's measurement jobs: networks searches wait for it to time."""
    if status is not None and status not in ("pending", "done", "cancelled"):
        raise ValueError(f"--status must be pending, done or cancelled, got {status!r}")
    params = {"limit": 200, **({"status": status} if status else {})}
    with ApiClient(server) as api:
        page = api.get_json(f"{_device_path(device)}/jobs", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("job", "search", "role", "status", Column("measured ms", justify="right"), title=f"{device}: jobs")
    for job in page["items"]:
        measured = "-" if job["median_ms"] is None else f"{job['median_ms']:.4f}"
        table.add_row(job["id"], job["search_id"] or "-", job["role"], job["status"], measured)
    console.print(table)
    console.print(f"{page['total']} job(s)")


@device_app.command("verify-kit")
@cli_errors
def device_verify_kit(
    device: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="zip file to write")],
    server: ServerOpt = None,
    quick: Annotated[bool, typer.Option(help="fewer timed runs per model (smoke runs)")] = False,
) -> None:
    """Download a verification kit of the device's pending jobs, for a device off the network."""

    size, manifest = _download_kit(server, f"{_device_path(device)}/jobs/kit?{urlencode({'quick': quick})}", output)
    console.print(f"wrote {output} ({size / 1e6:.2f} MB, {len(manifest.models)} network(s), kit {manifest.kit_id})")
    console.print(f"on the device: unzip, `python runner.py`, then `hwnas device verify-import {device} results.json`")


@device_app.command("verify-import")
@cli_errors
def device_verify_import(
    device: str,
    results: Path,
    server: ServerOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upload a verification kit's results: answers the jobs (all or nothing); waiting searches go on."""
    _upload_results(
        server,
        f"{_device_path(device)}/jobs/results",
        results,
        as_json,
        lambda answer: (
            f"answered {len(answer['answered'])} job(s) of {device}"
            + (f"; {len(answer['skipped'])} already answered or cancelled" if answer["skipped"] else "")
        ),
    )
