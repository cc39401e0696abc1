"""`hwnas search|arch|dataset ...` as thin HTTP clients of a live server, driven as a user would:
upload a local dataset while submitting, watch the search to its end over SSE, read it, download the
winner; every failure is one line and a non-zero exit code."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from api import cli_common
from api.cli import app
from nas.store import DATABASE_URL_ENV
from search_spaces.arch_spec import ArchSpec
from tests.api.search_helpers import fastest_ms
from tests.markers import SQLITE_ONLY

runner = CliRunner()
# The tiny space on a dataset whose 3 classes the LUT of device "local" covers (so budgets are checked).
TINY = ["--space", "api_tiny", "--resolution", "16", "--dataset", "synthetic:classes=3,per_class=24,resolution=16"]


@pytest.fixture
def cli(search_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run `hwnas ...` against the live server as alice (HWNAS_SERVER, HWNAS_API_KEY)."""
    monkeypatch.setenv("HWNAS_SERVER", search_server.url)
    monkeypatch.setenv("HWNAS_API_KEY", search_server.tokens["alice"])
    monkeypatch.setenv(DATABASE_URL_ENV, search_server.settings.database_url)
    monkeypatch.chdir(tmp_path)
    for console in (cli_common.console, cli_common.err_console):
        monkeypatch.setattr(console, "_width", 160)  # tables on one line each, whatever the terminal

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, list(args), env=env)
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    return invoke


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def failed(result: Result, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    return " ".join(result.output.split())


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def write_npz(path: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3 * per_class, 16, 16), dtype=np.uint8)  # grayscale NHW
    y = np.repeat(np.arange(3), per_class)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    path.write_bytes(buffer.getvalue())
    return path


# The same journey over HTTP runs on PostgreSQL in test_search_journey.py.
@SQLITE_ONLY
def test_submit_with_a_local_file_watch_show_and_download(cli, search_server, tmp_path: Path) -> None:
    budget = f"{3.0 * fastest_ms(search_server):.6f}"
    data = write_npz(tmp_path / "mine.npz")
    options = ["--space", "api_tiny", "--effort", "smoke", "--resolution", "16", "--seed", "1", "--augment", "shift",
               "--json"]  # fmt: skip
    submitted = ok(cli("search", "submit", "--device", "local", "--budget-ms", budget, "--dataset", str(data),
                       *options))  # fmt: skip
    search = as_json(submitted)
    assert search["status"] in ("queued", "running") and "uploaded mine.npz as dataset" in submitted.output
    assert search["request"]["augment"] == "shift"
    datasets = as_json(ok(cli("dataset", "list", "--json")))
    assert datasets["total"] == 1 and search["dataset"] == datasets["items"][0]["id"]
    assert datasets["items"][0]["image_shape"] == [1, 16, 16]

    watched = ok(cli("search", "watch", search["id"]))
    assert "hwnas winner" in watched.stdout and "MobileNetV3-Small (scaled)" in watched.stdout
    assert "[start]" in watched.output and "[done]" in watched.output
    shown = as_json(ok(cli("search", "show", search["id"], "--json")))
    assert shown["status"] == "succeeded" and shown["events"][-1]["kind"] == "done"
    winner_id = shown["winner_id"]
    assert f"hwnas arch download {winner_id} -o DIR" in watched.stdout
    assert "succeeded" in ok(cli("search", "show", search["id"])).stdout

    listed = as_json(ok(cli("search", "list", "--status", "succeeded", "--json")))
    assert [s["id"] for s in listed["items"]] == [search["id"]]
    assert search["id"] in ok(cli("search", "list")).stdout
    candidates = as_json(ok(cli("search", "candidates", search["id"], "--sort", "-accuracy", "--json")))
    accuracies = [c["accuracy"] for c in candidates["items"] if c["accuracy"] is not None]
    assert accuracies == sorted(accuracies, reverse=True) and candidates["total"] >= 4
    assert "of" in ok(cli("search", "candidates", search["id"], "--phase", "search")).stdout
    front = as_json(ok(cli("search", "pareto", search["id"], "--json")))
    assert front["items"] and front["budget_ms"] == pytest.approx(float(budget))

    target = tmp_path / "winner"
    ok(cli("arch", "download", winner_id, "-o", str(target)))
    assert sorted(p.name for p in target.iterdir()) == ["model.onnx", "model_uint8.onnx", "spec.json", "weights.pt"]
    spec = ArchSpec.from_json((target / "spec.json").read_text())
    assert torch.load(target / "weights.pt", weights_only=False)["spec"] == json.loads(spec.to_json())
    assert (target / "model.onnx").stat().st_size > 1000
    shown_arch = as_json(ok(cli("arch", "show", winner_id, "--json")))
    assert shown_arch["role"] == "winner" and ArchSpec.model_validate(shown_arch["spec"]) == spec
    assert {a["role"] for a in as_json(ok(cli("arch", "list", "--json")))["items"]} == {"winner", "baseline"}

    message = failed(cli("search", "cancel", search["id"]))
    assert "cannot cancel" in message and "409" in message
    bob = {"HWNAS_API_KEY": search_server.tokens["bob"]}
    assert "no search" in failed(cli("search", "show", search["id"], env=bob))
    assert "no architecture" in failed(cli("arch", "download", winner_id, "-o", str(tmp_path / "bob"), env=bob))
    assert not (tmp_path / "bob").exists() or list((tmp_path / "bob").iterdir()) == []


def test_cancel_from_the_command_line(cli, search_server) -> None:
    budget = f"{2.0 * fastest_ms(search_server):.6f}"
    common = ["--device", "local", "--budget-ms", budget, "--space", "api_tiny", "--resolution", "16",
              "--dataset", "synthetic:classes=3,per_class=24,resolution=16"]  # fmt: skip
    first = as_json(ok(cli("search", "submit", *common, "--effort", "thorough", "--json")))
    second = as_json(ok(cli("search", "submit", *common, "--effort", "smoke", "--json")))
    assert "cancelled" in ok(cli("search", "cancel", second["id"])).stdout  # queued behind the first
    answer = ok(cli("search", "cancel", first["id"])).stdout
    assert "cancel requested" in answer or "cancelled" in answer  # running, or not yet claimed
    watched = cli("search", "watch", first["id"], "--json")
    assert watched.exit_code == 1 and as_json(watched)["status"] == "cancelled"
    assert "was cancelled" in watched.output


SUBMIT = ["search", "submit", "--device", "local"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([*SUBMIT, "--budget-ms", "-1"], "budget_ms"),
        (["search", "submit", "--device", "nope", "--budget-ms", "5"], "no device named 'nope'"),
        ([*SUBMIT, "--budget-ms", "5", "--dataset", "gone.npz"], "no such file"),
        ([*SUBMIT, "--budget-ms", "5", *TINY[:4], "--dataset", "imagenet"], "unknown dataset"),
        ([*SUBMIT, "--budget-ms", "1e-9", *TINY], "smallest latency"),
        (["search", "show", "nope"], "no search with id 'nope'"),
        (["search", "watch", "nope"], "no search with id 'nope'"),
        (["search", "candidates", "nope"], "no search"),
        (["search", "candidates", "nope", "--sort", "size"], "sort"),
        (["arch", "show", "nope"], "no architecture"),
        (["dataset", "upload", "missing.npz"], "no such file"),
        (["search", "run", "--device", "local", "--budget-ms", "1e-9", *TINY], "smallest latency"),
        ([*SUBMIT, "--budget-ms", "5", *TINY, "--augment", "rotate"], "augment"),
        (["search", "run", "--device", "local", "--budget-ms", "5", *TINY, "--augment", "rotate"], "augment"),
    ],
)
def test_failures_are_one_line_and_exit_2(cli, args, words) -> None:
    assert words in failed(cli(*args))


def test_a_bad_upload_reports_the_servers_reason(cli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n" * 10)
    message = failed(cli("dataset", "upload", str(tmp_path / "notes.txt")))
    assert "415" in message and ".npz" in message


def test_no_server_or_a_bad_key_is_a_clear_message(cli) -> None:
    assert "cannot reach the hwnas server" in failed(cli("search", "list", env={"HWNAS_SERVER": "http://127.0.0.1:9"}))
    assert "401" in failed(cli("search", "list", env={"HWNAS_API_KEY": "hwnas_nope_nope"}))


def test_search_run_works_in_process_without_a_server(
    api_search_space, api_search_lut, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hwnas search run`: the search runs in this process on the database directly (its own SQLite)."""
    from nas.latency import add_device, open_sessions, store_lut_entries
    from search_spaces import space as space_module

    monkeypatch.setitem(space_module.SPACES, api_search_space.name, api_search_space)
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'run.db'}")
    monkeypatch.setenv("HWNAS_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("HWNAS_SERVER", "http://127.0.0.1:9")  # no server is needed, nor reached
    monkeypatch.chdir(tmp_path)
    for console in (cli_common.console, cli_common.err_console):
        monkeypatch.setattr(console, "_width", 160)
    sessions = open_sessions()
    add_device(sessions, "local", threads=1)
    store_lut_entries(sessions, "local", api_search_lut)
    from nas.latency import load_predictor
    from search_spaces.space import get_space

    space = get_space("api_tiny").with_options(resolutions=[16], num_classes=3)
    # 3x the fastest, as in test_search_journey.py: MobileNetV3-Small's narrowest width at 16 px measures
    # about 2x the tiny space's fastest network, so at 2x the baseline's presence was luck.
    budget = 3.0 * load_predictor(sessions, "local", space).pricer(space).fastest()[0]
    result = runner.invoke(app, ["search", "run", "--device", "local", "--budget-ms", f"{budget:.6f}",
                                 "--effort", "smoke", *TINY])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hwnas winner" in result.stdout
    assert "winner artifacts (spec.json, model.onnx, model_uint8.onnx, weights.pt)" in result.stdout
    assert len(list((tmp_path / "artifacts").rglob("model.onnx"))) == 2  # winner and baseline
