"""Shared pieces of the `hwnas` command line: consoles, the error wrapper, JSON output, progress bars."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)

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
            from api.client import ApiError
            from nas.store import StoreError

            if isinstance(error, StoreError | ApiError):
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
