"""`hwnas device ...` and `hwnas lut ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Column, Table

from api.cli import ClassesOpt, ResolutionOpt, SpaceOpt, WidthOpt, _space, device_app, lut_app
from api.cli_common import cli_errors, console, print_json, progress_bar, sessions

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
