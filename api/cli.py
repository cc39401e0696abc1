"""The `hwnas` command line.

Every command prints a clear message and exits non-zero on bad input; none shows a traceback.
`--json` output goes to stdout unadorned so scripts can read it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from api.cli_common import cli_errors, console, print_json, sessions

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


# --- keys and the server ---------------------------------------------------------------------------

key_app = typer.Typer(help="API keys (bearer tokens; stored hashed).", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("create")
@cli_errors
def key_create(
    name: Annotated[str, typer.Option(help="who or what the key is for")] = "default",
    admin: Annotated[bool, typer.Option("--admin", help="may see every key's searches and datasets")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an API key in the database (HWNAS_DATABASE_URL); the token is printed once."""
    from nas.store import ApiKeyRepository, session_scope

    with session_scope(sessions()) as session:
        identity, token = ApiKeyRepository(session).create(name, admin=admin)
    if as_json:
        print_json({"key_id": identity.key_id, "name": identity.name, "admin": identity.admin, "token": token})
        return
    console.print(f"key {identity.key_id} ({'admin' if admin else 'user'}) for {name!r}; keep this token:")
    print(token, flush=True)


@key_app.command("list")
@cli_errors
def key_list() -> None:
    """List the active keys (ids and names; tokens are never stored)."""
    from nas.store import ApiKeyRepository, session_scope

    with session_scope(sessions()) as session:
        for identity in ApiKeyRepository(session).list():
            console.print(f"{identity.key_id}  {'admin' if identity.admin else 'user '}  {identity.name}")


@key_app.command("revoke")
@cli_errors
def key_revoke(key_id: str) -> None:
    """Revoke a key: its token stops working at once."""
    from nas.store import ApiKeyRepository, session_scope

    with session_scope(sessions()) as session:
        if not ApiKeyRepository(session).revoke(key_id):
            raise ValueError(f"no active key with id {key_id!r}")
    console.print(f"key {key_id} revoked")


@app.command("serve")
@cli_errors
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    worker: Annotated[bool, typer.Option(help="run one search worker in this process")] = True,
) -> None:
    """Run the HTTP API (and one embedded worker) on HWNAS_DATABASE_URL, HWNAS_ARTIFACT_DIR, ..."""

    import uvicorn

    from api.app import create_app
    from api.logs import configure_logging
    from api.settings import Settings
    from nas.settings import set_embedded_worker_default

    set_embedded_worker_default(worker)
    settings = Settings()
    configure_logging(settings.log_format)
    app_ = create_app(settings)
    console.print(f"hwnas API on http://{host}:{port} (dashboard at /, docs at /docs)")
    uvicorn.run(app_, host=host, port=port, log_config=None, access_log=False)


# --- worker ----


@app.command("worker")
@cli_errors
def worker_command(
    once: Annotated[bool, typer.Option(help="stop when the queue is empty")] = False,
    poll_s: Annotated[float, typer.Option(min=0.1)] = 2.0,
    stale_after_s: Annotated[
        float, typer.Option(min=0.01, help="re-claim a running search whose heartbeat is older than this")
    ] = 60.0,
) -> None:
    """Claim and run queued searches (HWNAS_DATABASE_URL, HWNAS_RAY_ADDRESS, HWNAS_ARTIFACT_DIR).

    SIGTERM (`docker compose stop`) stops it after its current search; if it is killed before that, the
    search is re-claimed by another worker once its heartbeat is older than --stale-after-s."""
    import signal
    import threading

    from api.logs import configure_logging
    from nas.settings import Settings, machine_id
    from nas.worker import new_worker_id, run_worker

    configure_logging(Settings().log_format)  # HWNAS_LOG_FORMAT, like `hwnas serve`
    worker_id = new_worker_id()
    # The machine id decides which searches it claims: phones', and those on devices registered on this machine.
    console.print(f"worker {worker_id} (machine {machine_id()}) polling for searches")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ran = run_worker(sessions(), worker_id, once=once, poll_s=poll_s, stale_after_s=stale_after_s, stop=stop)
    console.print(f"worker {worker_id} ran {ran} search(es)")


# --- demo ------------------------------------------------------------------------------------------


@app.command("demo")
@cli_errors
def demo(
    device: Annotated[str, typer.Option(help="name for this machine's device")] = "this-machine-1t",
    threads: Annotated[int, typer.Option(min=1)] = 1,
    effort: Annotated[str, typer.Option(help="search effort preset: smoke, quick, default, thorough")] = "default",
    budget_fraction: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="budget as a fraction of MobileNetV3-Small 1.0's latency")
    ] = 0.6,
    resolution: Annotated[
        int, typer.Option(min=16, max=320, help="deployment resolution: latency, budget, export, accuracy")
    ] = 128,
    train_resolution: Annotated[
        int, typer.Option(min=16, max=320, help="resolution the search's trials train at")
    ] = 32,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port on 127.0.0.1 (0: any free port)")] = 0,
    stay: Annotated[bool, typer.Option("--stay", help="keep serving the dashboard afterwards")] = False,
    strategy: Annotated[
        str, typer.Option(help="search strategy: supernet (weight sharing), evolution, random or pareto")
    ] = "supernet",
) -> None:
    """The three journeys over HTTP on the embedded defaults (SQLite, local Ray, this machine)."""
    from api.demo import run_demo

    if train_resolution > resolution:
        raise typer.BadParameter(f"--train-resolution {train_resolution} is above --resolution {resolution}")
    run_demo(
        device=device,
        threads=threads,
        effort=effort,
        budget_fraction=budget_fraction,
        resolution=resolution,
        train_resolution=train_resolution,
        port=port,
        stay=stay,
        strategy=strategy,
    )


# Command groups living in their own modules register themselves on `app` when imported.
import api.cli_devices  # noqa: E402, F401 - `device`, `lut`
import api.cli_predict  # noqa: E402, F401 - `arch predict` (imports api.cli_searches: `search`, `arch`, `dataset`)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
