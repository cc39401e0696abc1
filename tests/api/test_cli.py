"""The `hwnas` command line, driven as a user would: real commands, real timings, no traceback ever.

Reference and space commands read nothing stored; each test points HWNAS_DATABASE_URL at its own file
(`nas.latency.open_sessions` caches one engine per URL). Device and lookup-table commands are thin
clients of the HTTP API: they run against the `live_server` fixture (SQLite and PostgreSQL) through
HWNAS_SERVER / HWNAS_API_KEY, on the tiny 32 px space registered as "tiny" (the server runs in this
process). `hwnas lut check` measures on this machine and writes the database directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from api.client import API_KEY_ENV, SERVER_ENV
from latency_lut import kit_runner
from latency_lut.kit import read_manifest_from_kit
from latency_lut.table import LatencyTable
from nas.store import DATABASE_URL_ENV
from search_spaces import space as space_module
from tests.markers import SQLITE_ONLY

# The smallest real space the CLI can name: mobilenet_v3_small at 32 px, width 0.4, 10 classes (at 0.35
# and below, stages 2 and 3 round to the same width, which the space refuses).
SPACE_ARGS = ["--space", "mobilenet_v3_small", "-r", "32", "-w", "0.4", "--num-classes", "10"]
TINY_ARGS = ["--space", "tiny"]
LOCAL = "this-1t"
REMOTE = "phone"
KIT_SIZE = 5  # keys the phone lacks, hence the keys of its kit

runner = CliRunner()


def invoke(*args: str) -> Result:
    """Run one command in-process; whatever happens, it must end in an exit code, never a traceback."""
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def succeeds(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def fails(*args: str, exit_code: int | None = None) -> str:
    """The combined output of a command that must fail, on one line (rich wraps long messages)."""
    result = invoke(*args)
    assert result.exit_code != 0, result.output
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    return " ".join(result.output.split())


def as_json(result: Result) -> Any:
    return json.loads(result.stdout)


def lut_entries(name: str) -> int:
    rows = as_json(succeeds("device", "list", "--json"))
    return next(row["lut_entries"] for row in rows if row["name"] == name)


def exported(name: str, directory: Path) -> dict[str, Any]:
    """The device's whole table, through `lut export`, to compare before and after a command."""
    path = directory / f"{name}-lut.json"
    succeeds("lut", "export", name, "-o", str(path))
    return json.loads(path.read_text())


def use_database(monkeypatch: pytest.MonkeyPatch, directory: Path) -> Path:
    path = directory / "hwnas.db"
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{path}")
    monkeypatch.chdir(directory)  # nothing may land in the repository, e.g. a default ./.hwnas/
    return path


@pytest.fixture
def fresh_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return use_database(monkeypatch, tmp_path)


# --- reference ---------------------------------------------------------------------------------------


def test_reference_list_text_and_json(fresh_db: Path) -> None:
    text = succeeds("reference", "list").output
    rows = as_json(succeeds("reference", "list", "--json"))

    names = [row["name"] for row in rows]
    assert {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"} <= set(names)
    for row in rows:
        assert row["name"] in text
        assert type(row["params"]) is int and type(row["madds"]) is int
        assert row["params"] > 0 and row["madds"] > 0


def test_reference_show_text_and_json(fresh_db: Path) -> None:
    text = succeeds("reference", "show", "mobilenet_v2", "--width", "0.5", "--resolution", "160").output
    shown = as_json(succeeds("reference", "show", "mobilenet_v2", "--width", "0.5", "--resolution", "160", "--json"))
    full = as_json(succeeds("reference", "show", "mobilenet_v2", "--json"))

    assert (shown["name"], shown["width"], shown["resolution"]) == ("mobilenet_v2", 0.5, 160)
    assert shown["hash"] in text and f"{shown['params']:,}" in text
    assert shown["blocks"] and all(isinstance(block, str) for block in shown["blocks"])
    assert shown["params"] < full["params"] and shown["madds"] < full["madds"]


def test_console_script_prints_mobilenet_v3_large_counts(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "hwnas"
    env_url = {DATABASE_URL_ENV: f"sqlite:///{tmp_path / 'hwnas.db'}"}
    completed = subprocess.run(
        [str(script), "reference", "show", "mobilenet_v3_large", "--json"],
        cwd=tmp_path,
        env={**_base_env(), **env_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    shown = json.loads(completed.stdout)
    assert type(shown["params"]) is int and type(shown["madds"]) is int
    assert shown["params"] == pytest.approx(5.4e6, rel=0.05)
    assert shown["madds"] == pytest.approx(219e6, rel=0.05)

    bad = subprocess.run(
        [str(script), "reference", "show", "mobilenet_v9"],
        cwd=tmp_path,
        env={**_base_env(), **env_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0
    assert "unknown reference network" in bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


def _base_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != DATABASE_URL_ENV}


def test_reference_show_unknown_name_fails_with_a_message(fresh_db: Path) -> None:
    output = fails("reference", "show", "mobilenet_v9")
    assert "unknown reference network 'mobilenet_v9'" in output
    assert "mobilenet_v3_large" in output  # the known names are listed


@pytest.mark.parametrize("width", ["2.0", "0.1"])
def test_reference_show_width_out_of_range_fails(fresh_db: Path, width: str) -> None:
    output = fails("reference", "show", "mobilenet_v3_large", "--width", width)
    assert "width" in output and width in output


def test_reference_show_bad_resolution_fails(fresh_db: Path) -> None:
    assert "resolution" in fails("reference", "show", "mobilenet_v3_large", "--resolution", "8")
    assert "resolution" in fails("reference", "show", "mobilenet_v3_large", "--resolution", "abc")


# --- space -------------------------------------------------------------------------------------------


def test_space_list_text_and_json(fresh_db: Path) -> None:
    text = succeeds("space", "list").output
    rows = as_json(succeeds("space", "list", "--json"))

    assert {row["name"] for row in rows} >= {"mobilenet_v3_large", "mobilenet_v3_small"}
    for row in rows:
        assert row["name"] in text
        assert type(row["num_architectures"]) is int and row["num_architectures"] > 1
        assert type(row["num_block_keys"]) is int and row["num_block_keys"] > 0


def test_space_show_json_and_restriction(fresh_db: Path) -> None:
    full = as_json(succeeds("space", "show", "mobilenet_v3_small", "--json"))
    small = as_json(succeeds("space", "show", "mobilenet_v3_small", *SPACE_ARGS[2:], "--json"))
    text = succeeds("space", "show", "mobilenet_v3_small", *SPACE_ARGS[2:]).output

    for info in (full, small):
        assert type(info["num_architectures"]) is int and type(info["num_block_keys"]) is int
    assert (small["resolutions"], small["widths"], small["num_classes"]) == ([32], [0.4], 10)
    assert small["num_block_keys"] < full["num_block_keys"]
    assert small["num_architectures"] < full["num_architectures"]
    assert f"{small['num_block_keys']:,}" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["space", "show", "mobilenet_v9"], "unknown search space"),
        (["space", "show", "mobilenet_v3_small", "-r", "8"], "resolutions must be within"),
        (["space", "show", "mobilenet_v3_small", "-w", "3"], "width multipliers must be within"),
        (["space", "show", "mobilenet_v3_small", "--num-classes", "1"], "num_classes must be at least 2"),
    ],
)
def test_space_show_bad_options_fail_with_a_message(fresh_db: Path, args: list[str], message: str) -> None:
    assert message in fails(*args, exit_code=2)


# --- device and lookup-table commands: clients of a live server ----------------------------------------


@pytest.fixture
def served(live_server, tiny_lut_space, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The CLI pointed at a live server (alice's key), with the tiny space registered in it."""
    monkeypatch.setenv(SERVER_ENV, live_server.url)
    monkeypatch.setenv(API_KEY_ENV, live_server.tokens["alice"])
    monkeypatch.setitem(space_module.SPACES, tiny_lut_space.name, tiny_lut_space)
    monkeypatch.chdir(tmp_path)  # nothing may land in the repository
    return live_server


def test_device_add_and_list(served) -> None:
    added = succeeds("device", "add", "cpu-2t", "--threads", "2")
    assert "cpu-2t" in added.output and "the server's machine" in added.output

    rows = as_json(succeeds("device", "list", "--json"))

    assert len(rows) == 1
    assert (rows[0]["name"], rows[0]["threads"], rows[0]["lut_entries"], rows[0]["local"]) == ("cpu-2t", 2, 0, True)
    assert "cpu-2t" in succeeds("device", "list").output


def test_device_add_remote_with_facts(served) -> None:
    added = as_json(
        succeeds(
            "device", "add", "pixel-7", "--remote", "--fact", "soc=X", "--fact", "os = Android 14",
            "--runtime-version", "1.17.0", "--json",
        )
    )  # fmt: skip

    assert added["facts"] == {"soc": "X", "os": "Android 14"}
    assert added["runtime_version"] == "1.17.0"
    [row] = as_json(succeeds("device", "list", "--json"))
    assert (row["name"], row["local"], row["facts"]) == ("pixel-7", False, {"soc": "X", "os": "Android 14"})


def test_device_add_duplicate_fails_with_exit_code_2(served) -> None:
    succeeds("device", "add", "cpu-1t")

    output = fails("device", "add", "cpu-1t", "--remote", "--fact", "soc=X", exit_code=2)

    assert "a device named 'cpu-1t' already exists" in output and "HTTP 409" in output
    [row] = as_json(succeeds("device", "list", "--json"))
    assert row["local"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device", "add", "pixel-7", "--remote", "--fact", "soc"], "--fact must look like key=value"),
        (["device", "add", "bad name"], "device name 'bad name'"),
        (["device", "add", "pixel/7", "--remote"], "device name 'pixel/7'"),
        (["device", "add", "cpu-0t", "--threads", "0"], "--threads"),
        (["device", "add", "cpu-xt", "--threads", "many"], "--threads"),
    ],
)
def test_device_add_bad_input_fails_with_a_message(served, args: list[str], message: str) -> None:
    assert message in fails(*args, exit_code=2)
    assert as_json(succeeds("device", "list", "--json")) == []


def test_device_commands_without_a_server_or_a_key_fail_in_one_line(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV)
    assert "an API key is required" in fails("device", "list", exit_code=2)
    monkeypatch.setenv(API_KEY_ENV, "hwnas_nope_nope")
    assert "the API key is not valid" in fails("device", "add", "x", exit_code=2)
    output = fails("device", "list", "--server", "http://127.0.0.1:9", exit_code=2)
    assert "cannot reach the hwnas server at http://127.0.0.1:9" in output


@pytest.fixture
def devices(served, tiny_lut, tiny_lut_space) -> dict[str, list[str]]:
    """LOCAL (the server's machine) and REMOTE, both lacking KIT_SIZE of the tiny space's keys.

    The tables are filled through the service (test setup) so that profiling and kits stay small.
    """
    from nas.latency import store_lut_entries

    keys = tiny_lut_space.block_keys()
    lacking = keys[:: len(keys) // KIT_SIZE][:KIT_SIZE]
    succeeds("device", "add", LOCAL, "--threads", "1")
    succeeds("device", "add", REMOTE, "--remote", "--fact", "soc=Test SoC")
    for name in (LOCAL, REMOTE):
        store_lut_entries(served.sessions, name, {key: tiny_lut[key] for key in keys if key not in lacking})
    return {"keys": keys, "lacking": lacking}


# --- agent and lut profile ---------------------------------------------------------------------------


def test_lut_profile_runs_the_agent_here_and_again_measures_nothing(devices) -> None:
    num_keys = len(devices["keys"])
    output = " ".join(succeeds("lut", "profile", LOCAL, *TINY_ARGS, "--quick", "--batch", "2").output.split())
    assert f"{num_keys} keys: {num_keys - KIT_SIZE} already measured, {KIT_SIZE} measured now" in output
    assert lut_entries(LOCAL) == num_keys
    table = exported(LOCAL, Path.cwd())["entries"]
    assert {key for key, entry in table.items() if entry["source"] == "agent"} == set(devices["lacking"])

    output = " ".join(succeeds("lut", "profile", LOCAL, *TINY_ARGS, "--quick").output.split())
    assert f"{num_keys} already measured, 0 measured now" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lut", "profile", REMOTE, *TINY_ARGS, "--quick"], "is not this machine"),
        (["lut", "profile", "nowhere", *TINY_ARGS, "--quick"], "no device named 'nowhere'"),
        (["lut", "profile", LOCAL, "--space", "nope", "--quick"], "unknown search space"),
        (["lut", "profile", LOCAL, *SPACE_ARGS[:2], "-r", "4", "--quick"], "resolutions must be within"),
        (["agent", "--device", REMOTE, *TINY_ARGS, "--threads", "2"], "not 2"),
        (["agent", "--device", REMOTE, "--space", "nope"], "unknown search space"),
        (["agent", *TINY_ARGS], "--device"),
    ],
)
def test_lut_profile_and_agent_bad_input_fail_with_a_message(devices, args: list[str], message: str) -> None:
    assert message in fails(*args, exit_code=2)
    assert lut_entries(REMOTE) == lut_entries(LOCAL) == len(devices["keys"]) - KIT_SIZE


# The agent's batches on PostgreSQL: test_devices_journey.py (the same routes, resumed).
@SQLITE_ONLY
def test_agent_command_measures_in_batches_and_resumes(devices) -> None:
    args = ["agent", "--device", REMOTE, *TINY_ARGS, "--quick", "--batch", "2"]

    first = as_json(succeeds(*args, "--max-batches", "1", "--json"))

    assert (first["measured"], first["batches"], first["missing_now"], first["finished"]) == (2, 1, KIT_SIZE - 2, False)
    assert lut_entries(REMOTE) == len(devices["keys"]) - KIT_SIZE + 2
    text = " ".join(succeeds(*args).output.split())
    assert f"{KIT_SIZE - 2} measured now" in text and "still missing" not in text
    assert lut_entries(REMOTE) == len(devices["keys"])


# --- lut export --------------------------------------------------------------------------------------


def test_lut_export_writes_a_table_that_reads_back(devices, tmp_path: Path) -> None:
    path = tmp_path / "lut.json"

    output = succeeds("lut", "export", LOCAL, "-o", str(path)).output

    expected = len(devices["keys"]) - KIT_SIZE
    assert f"wrote {expected} entries" in output
    table = LatencyTable.from_json(path.read_text())
    assert len(table) == expected
    assert table.device.name == LOCAL and table.device.threads == 1
    assert all(entry.median_ms > 0 and entry.source == "profiler" for entry in table.entries.values())


def test_lut_export_failures(devices, tmp_path: Path) -> None:
    assert "no device named 'nowhere'" in fails("lut", "export", "nowhere", "-o", str(tmp_path / "x.json"))
    assert "--output" in fails("lut", "export", LOCAL)
    assert fails("lut", "export", LOCAL, "-o", str(tmp_path / "missing-dir" / "lut.json"), exit_code=2)


# --- lut kit and import ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kit:
    output: str
    zip_path: Path
    results: dict[str, Any]

    def results_file(self, directory: Path, results: dict[str, Any] | None = None, name: str = "r.json") -> Path:
        path = directory / name
        path.write_text(json.dumps(self.results if results is None else results))
        return path


@pytest.fixture
def kit(devices, tmp_path: Path) -> Kit:
    """Through the CLI: the phone's kit downloaded, then run as on the phone (its runner, in-process here)."""
    zip_path = tmp_path / "phone-kit.zip"
    output = succeeds("lut", "kit", REMOTE, "-o", str(zip_path), *TINY_ARGS, "--quick", "--no-networks").output
    kit_dir = tmp_path / "unzipped"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(kit_dir)
    assert kit_runner.main(["--kit-dir", str(kit_dir)]) == 0
    return Kit(output, zip_path, json.loads((kit_dir / "results.json").read_text()))


def test_lut_kit_writes_a_zip_for_the_missing_keys(devices, kit: Kit) -> None:
    output = " ".join(kit.output.split())
    manifest = read_manifest_from_kit(kit.zip_path)

    assert f"{KIT_SIZE} models, kit {manifest.kit_id}" in output
    assert f"hwnas lut import {REMOTE} results.json" in output
    assert manifest.device == REMOTE
    assert sorted(manifest.keys) == sorted(devices["lacking"])
    assert kit.results["kit_id"] == manifest.kit_id
    assert sorted(result["key"] for result in kit.results["results"]) == sorted(devices["lacking"])


def test_lut_kit_failures(devices, tmp_path: Path) -> None:
    zip_path = tmp_path / "kit.zip"
    succeeds("lut", "profile", LOCAL, *TINY_ARGS, "--quick")
    no_networks = ("--no-networks",)  # the calibration networks are still missing
    assert "nothing to put in a kit" in fails(
        "lut", "kit", LOCAL, "-o", str(zip_path), *TINY_ARGS, *no_networks, exit_code=2
    )
    assert "no device named 'nowhere'" in fails("lut", "kit", "nowhere", "-o", str(zip_path), *TINY_ARGS)
    assert "unknown search space" in fails("lut", "kit", REMOTE, "-o", str(zip_path), "--space", "nope")
    assert "--output" in fails("lut", "kit", REMOTE, *TINY_ARGS)
    assert not zip_path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".kit.zip")] == []


def test_lut_import_stores_the_kit_results(devices, kit: Kit, tmp_path: Path) -> None:
    path = kit.results_file(tmp_path)

    stored = as_json(succeeds("lut", "import", REMOTE, str(path), "--json"))

    assert (stored["source"], stored["imported"], stored["already_present"]) == ("kit", KIT_SIZE, 0)
    assert stored["kit"]["covered"] == stored["kit"]["total"] == KIT_SIZE and stored["kit"]["coverage"] == 1.0
    assert stored["lut_entries"] == lut_entries(REMOTE) == len(devices["keys"])
    entries = exported(REMOTE, tmp_path)["entries"]
    assert {key for key, entry in entries.items() if entry["source"] == "kit"} == set(devices["lacking"])
    measured = {result["key"]: result["median_ms"] for result in kit.results["results"]}
    assert {key: entries[key]["median_ms"] for key in measured} == measured


def test_lut_import_partial_results(devices, kit: Kit, tmp_path: Path) -> None:
    partial = {**kit.results, "results": kit.results["results"][:2]}
    path = kit.results_file(tmp_path, partial)

    output = " ".join(succeeds("lut", "import", REMOTE, str(path)).output.split())

    assert f"stored 2 of the kit's {KIT_SIZE} keys for {REMOTE} (coverage 40.0%)" in output
    assert lut_entries(REMOTE) == len(devices["keys"]) - KIT_SIZE + 2


def _tampered(results: dict[str, Any], **changes: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(results))
    entry_changes = changes.pop("entry", {})
    copy["results"][0].update(entry_changes)
    copy.update(changes)
    return copy


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entry": {"sha256": "0" * 64}}, "is not the kit's model checksum"),
        ({"entry": {"median_ms": -1}}, "'median_ms' must be a finite number > 0"),
        ({"entry": {"median_ms": float("nan")}}, "'median_ms' must be a finite number > 0"),
        ({"entry": {"key": "ir_k7_s1_e6_c8_re@4x4x8"}}, "is not in kit"),
        ({"kit_version": 2}, "'kit_version' must be 1"),
        ({"threads": 4}, "'threads' must be 1"),
        ({"kit_id": "f" * 32}, "names no kit made by this server"),
    ],
    ids=["sha256", "median", "nan", "unknown-key", "kit-version", "threads", "kit-id"],
)
def test_lut_import_refuses_a_tampered_file(kit: Kit, tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = kit.results_file(tmp_path, _tampered(kit.results, **change))
    before = exported(REMOTE, tmp_path)

    output = fails("lut", "import", REMOTE, str(path), exit_code=2)

    assert message in output and "HTTP 422" in output
    assert exported(REMOTE, tmp_path) == before


def test_lut_import_refuses_other_bad_files(kit: Kit, tmp_path: Path) -> None:
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ not json")
    good = kit.results_file(tmp_path)
    before = {name: exported(name, tmp_path) for name in (LOCAL, REMOTE)}

    assert "not valid JSON" in fails("lut", "import", REMOTE, str(not_json), exit_code=2)
    assert "No such file" in fails("lut", "import", REMOTE, str(tmp_path / "absent.json"), exit_code=2)
    assert "another device's kit" in fails("lut", "import", LOCAL, str(good), exit_code=2)
    assert "no device named 'nowhere'" in fails("lut", "import", "nowhere", str(good), exit_code=2)
    assert {name: exported(name, tmp_path) for name in (LOCAL, REMOTE)} == before


# --- lut check: measures this machine, writes the database directly ----------------------------------


@pytest.fixture
def checked_db(fresh_db: Path, tiny_lut, tiny_lut_space, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LOCAL with the tiny space's whole table, REMOTE lacking KIT_SIZE keys, in this test's database."""
    from nas.latency import add_device, open_sessions, store_lut_entries

    monkeypatch.setitem(space_module.SPACES, tiny_lut_space.name, tiny_lut_space)
    sessions = open_sessions()
    add_device(sessions, LOCAL, threads=1)
    add_device(sessions, REMOTE, local=False)
    store_lut_entries(sessions, LOCAL, tiny_lut)
    store_lut_entries(sessions, REMOTE, dict(sorted(tiny_lut.items())[KIT_SIZE:]))
    return fresh_db


def test_lut_check_reports_three_predictors(checked_db: Path) -> None:
    args = ["lut", "check", LOCAL, *TINY_ARGS, "--quick", "--n", "4", "--n-calibration", "3"]

    report = as_json(succeeds(*args, "--json"))

    assert (report["device"], report["n_calibration"], report["n_evaluation"]) == (LOCAL, 3, 4)
    assert set(report["scores"]) == {"calibrated", "lut_sum", "madds_linear"}
    assert all(score["n"] == 4 for score in report["scores"].values())
    assert report["calibration"]["n_measurements"] == 3
    # The second run re-uses the stored measurements, so it reports exactly the same.
    assert as_json(succeeds(*args, "--json")) == report
    text = " ".join(succeeds(*args).output.split())
    assert "calibrated" in text and "madds_linear" in text


def test_lut_check_failures(checked_db: Path) -> None:
    # The phone's table lacks keys, and n must be at least 1.
    output = fails("lut", "check", REMOTE, *TINY_ARGS, "--quick", "--n", "4", exit_code=2)
    assert f"lacks {KIT_SIZE} key(s)" in output
    assert "--n" in fails("lut", "check", LOCAL, *TINY_ARGS, "--quick", "--n", "0")
