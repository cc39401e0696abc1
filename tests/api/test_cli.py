"""The `hwnas` command line, driven as a user would: real commands, a real SQLite file, real timings.

Each test points HWNAS_DATABASE_URL at its own file (`nas.latency.open_sessions` caches one engine per
URL). The lookup-table commands share one profile of a small real space, made once per module through
the CLI itself; each of those tests works on its own copy of that database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from latency_lut.kit import read_manifest_from_kit
from latency_lut.table import LatencyTable
from nas.store import DATABASE_URL_ENV

# The smallest real space the CLI can name: mobilenet_v3_small at 32 px, width 0.4, 10 classes (at 0.35
# and below, stages 2 and 3 round to the same width, which the space refuses).
SPACE_ARGS = ["--space", "mobilenet_v3_small", "-r", "32", "-w", "0.4", "--num-classes", "10"]
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


# --- one real profile and kit for the lookup-table tests ----------------------------------------------


@dataclass(frozen=True)
class Profiled:
    database: Path
    num_keys: int
    profile_output: str
    kit_keys: list[str]
    kit_output: str
    kit_zip: Path
    results: dict[str, Any]

    def results_file(self, directory: Path, results: dict[str, Any] | None = None, name: str = "r.json") -> Path:
        path = directory / name
        path.write_text(json.dumps(self.results if results is None else results))
        return path


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Profiled:
    """Through the CLI: this machine profiled over the space, then a phone's kit built and run.

    Exporting a key to ONNX costs as much as timing it, so the phone's table is first filled with all
    but KIT_SIZE of this machine's entries (test setup through the service): its kit, which holds
    only the keys the phone lacks, stays small.
    """
    from nas.latency import load_table, open_sessions, store_lut_entries

    directory = tmp_path_factory.mktemp("profiled")
    with pytest.MonkeyPatch.context() as monkeypatch:
        database = use_database(monkeypatch, directory)
        num_keys = as_json(succeeds("space", "show", "mobilenet_v3_small", *SPACE_ARGS[2:], "--json"))["num_block_keys"]
        succeeds("device", "add", LOCAL, "--threads", "1")
        succeeds("device", "add", REMOTE, "--remote", "--fact", "soc=Test SoC")
        profile = succeeds("lut", "profile", LOCAL, *SPACE_ARGS, "--quick")

        sessions = open_sessions()
        measured = load_table(sessions, LOCAL).entries
        keys = sorted(measured)
        kit_keys = keys[:: len(keys) // KIT_SIZE][:KIT_SIZE]
        store_lut_entries(sessions, REMOTE, {key: entry for key, entry in measured.items() if key not in kit_keys})
        kit_zip = directory / "phone-kit.zip"
        kit = succeeds("lut", "kit", REMOTE, "-o", str(kit_zip), *SPACE_ARGS)
    kit_dir = directory / "unzipped"
    with zipfile.ZipFile(kit_zip) as archive:
        archive.extractall(kit_dir)
    completed = subprocess.run(
        [sys.executable, "runner.py"], cwd=kit_dir, capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads((kit_dir / "results.json").read_text())
    return Profiled(database, num_keys, profile.output, kit_keys, kit.output, kit_zip, results)


@pytest.fixture
def profiled_db(profiled: Profiled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Profiled]:
    """This test's own copy of the profiled database (sqlite3's backup API also copies what is in the WAL)."""
    copy = use_database(monkeypatch, tmp_path)
    source, target = sqlite3.connect(profiled.database), sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    yield profiled


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


# --- device ------------------------------------------------------------------------------------------


def test_device_add_and_list(fresh_db: Path) -> None:
    added = succeeds("device", "add", "cpu-2t", "--threads", "2")
    assert "cpu-2t" in added.output and "this machine" in added.output

    rows = as_json(succeeds("device", "list", "--json"))

    assert len(rows) == 1
    assert (rows[0]["name"], rows[0]["threads"], rows[0]["lut_entries"], rows[0]["this_machine"]) == (
        "cpu-2t",
        2,
        0,
        True,
    )
    assert "cpu-2t" in succeeds("device", "list").output


def test_device_add_remote_with_facts(fresh_db: Path) -> None:
    added = as_json(
        succeeds(
            "device", "add", "pixel-7", "--remote", "--fact", "soc=X", "--fact", "os = Android 14",
            "--runtime-version", "1.17.0", "--json",
        )
    )  # fmt: skip

    assert added["facts"] == {"soc": "X", "os": "Android 14"}
    assert added["runtime_version"] == "1.17.0"
    [row] = as_json(succeeds("device", "list", "--json"))
    assert (row["name"], row["this_machine"], row["facts"]) == ("pixel-7", False, {"soc": "X", "os": "Android 14"})


def test_device_add_duplicate_fails_with_exit_code_2(fresh_db: Path) -> None:
    succeeds("device", "add", "cpu-1t")

    output = fails("device", "add", "cpu-1t", "--remote", "--fact", "soc=X", exit_code=2)

    assert "a device named 'cpu-1t' already exists" in output
    [row] = as_json(succeeds("device", "list", "--json"))
    assert row["this_machine"] is True


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
def test_device_add_bad_input_fails_with_a_message(fresh_db: Path, args: list[str], message: str) -> None:
    assert message in fails(*args, exit_code=2)
    assert as_json(succeeds("device", "list", "--json")) == []


# --- lut profile -------------------------------------------------------------------------------------


def test_lut_profile_measured_every_key_of_the_space(profiled_db: Profiled) -> None:
    summary = " ".join(profiled_db.profile_output.split())
    assert f"{profiled_db.num_keys} keys: 0 already measured, {profiled_db.num_keys} measured now" in summary
    assert lut_entries(LOCAL) == profiled_db.num_keys


def test_lut_profile_again_measures_nothing(profiled_db: Profiled) -> None:
    output = " ".join(succeeds("lut", "profile", LOCAL, *SPACE_ARGS, "--quick").output.split())
    assert f"{profiled_db.num_keys} already measured, 0 measured now" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lut", "profile", REMOTE, *SPACE_ARGS, "--quick"], "is not this machine"),
        (["lut", "profile", "nowhere", *SPACE_ARGS, "--quick"], "no device named 'nowhere'"),
        (["lut", "profile", LOCAL, "--space", "nope", "--quick"], "unknown search space"),
        (["lut", "profile", LOCAL, *SPACE_ARGS[:2], "-r", "4", "--quick"], "resolutions must be within"),
    ],
)
def test_lut_profile_bad_input_fails_with_a_message(profiled_db: Profiled, args: list[str], message: str) -> None:
    assert message in fails(*args, exit_code=2)
    assert lut_entries(REMOTE) == profiled_db.num_keys - KIT_SIZE


# --- lut export --------------------------------------------------------------------------------------


def test_lut_export_writes_a_table_that_reads_back(profiled_db: Profiled, tmp_path: Path) -> None:
    path = tmp_path / "lut.json"

    output = succeeds("lut", "export", LOCAL, "-o", str(path)).output

    assert f"wrote {profiled_db.num_keys} entries" in output
    table = LatencyTable.from_json(path.read_text())
    assert len(table) == profiled_db.num_keys
    assert table.device.name == LOCAL and table.device.threads == 1
    assert all(entry.median_ms > 0 and entry.source == "profiler" for entry in table.entries.values())


def test_lut_export_failures(profiled_db: Profiled, tmp_path: Path) -> None:
    assert "no device named 'nowhere'" in fails("lut", "export", "nowhere", "-o", str(tmp_path / "x.json"))
    assert "--output" in fails("lut", "export", LOCAL)
    assert fails("lut", "export", LOCAL, "-o", str(tmp_path / "missing-dir" / "lut.json"), exit_code=2)


# --- lut check ---------------------------------------------------------------------------------------


def test_lut_check_reports_three_predictors(profiled_db: Profiled) -> None:
    args = ["lut", "check", LOCAL, *SPACE_ARGS, "--quick", "--n", "4", "--n-calibration", "3"]

    report = as_json(succeeds(*args, "--json"))

    assert (report["device"], report["n_calibration"], report["n_evaluation"]) == (LOCAL, 3, 4)
    assert set(report["scores"]) == {"calibrated", "lut_sum", "madds_linear"}
    assert all(score["n"] == 4 for score in report["scores"].values())
    assert report["calibration"]["n_measurements"] == 3
    # The second run re-uses the stored measurements, so it reports exactly the same.
    assert as_json(succeeds(*args, "--json")) == report
    text = " ".join(succeeds(*args).output.split())
    assert "calibrated" in text and "madds_linear" in text


def test_lut_check_failures(profiled_db: Profiled) -> None:
    # The phone's table lacks the kit's keys, and n must be at least 1.
    output = fails("lut", "check", REMOTE, *SPACE_ARGS, "--quick", "--n", "4", exit_code=2)
    assert f"lacks {KIT_SIZE} key(s)" in output
    assert "--n" in fails("lut", "check", LOCAL, *SPACE_ARGS, "--quick", "--n", "0")


# --- lut kit and import ------------------------------------------------------------------------------


def test_lut_kit_writes_a_zip_for_the_missing_keys(profiled_db: Profiled) -> None:
    output = " ".join(profiled_db.kit_output.split())
    manifest = read_manifest_from_kit(profiled_db.kit_zip)

    assert f"{KIT_SIZE} models, kit {manifest.kit_id}" in output
    assert f"hwnas lut import {REMOTE} results.json" in output
    assert manifest.device == REMOTE
    assert sorted(manifest.keys) == sorted(profiled_db.kit_keys)
    assert profiled_db.results["kit_id"] == manifest.kit_id
    assert sorted(result["key"] for result in profiled_db.results["results"]) == sorted(profiled_db.kit_keys)


def test_lut_kit_failures(profiled_db: Profiled, tmp_path: Path) -> None:
    zip_path = tmp_path / "kit.zip"
    assert "nothing to put in a kit" in fails("lut", "kit", LOCAL, "-o", str(zip_path), *SPACE_ARGS, exit_code=2)
    assert "no device named 'nowhere'" in fails("lut", "kit", "nowhere", "-o", str(zip_path), *SPACE_ARGS)
    assert "--output" in fails("lut", "kit", REMOTE, *SPACE_ARGS)
    assert not zip_path.exists()


def test_lut_import_stores_the_kit_results(profiled_db: Profiled, tmp_path: Path) -> None:
    path = profiled_db.results_file(tmp_path)

    stored = as_json(succeeds("lut", "import", REMOTE, str(path), "--json"))

    assert stored == {"stored": KIT_SIZE, "total": KIT_SIZE, "coverage": 1.0}
    assert lut_entries(REMOTE) == profiled_db.num_keys
    entries = exported(REMOTE, tmp_path)["entries"]
    assert {key for key, entry in entries.items() if entry["source"] == "kit"} == set(profiled_db.kit_keys)
    measured = {result["key"]: result["median_ms"] for result in profiled_db.results["results"]}
    assert {key: entries[key]["median_ms"] for key in measured} == measured


def test_lut_import_partial_results(profiled_db: Profiled, tmp_path: Path) -> None:
    partial = {**profiled_db.results, "results": profiled_db.results["results"][:2]}
    path = profiled_db.results_file(tmp_path, partial)

    output = " ".join(succeeds("lut", "import", REMOTE, str(path)).output.split())

    assert f"stored 2 of the kit's {KIT_SIZE} keys for {REMOTE} (coverage 40.0%)" in output
    assert lut_entries(REMOTE) == profiled_db.num_keys - KIT_SIZE + 2


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
        ({"entry": {"key": "ir_k7_s1_e6_c8_re@4x4x8"}}, "is not in kit"),
        ({"kit_version": 2}, "'kit_version' must be 1"),
        ({"threads": 4}, "'threads' must be 1"),
        ({"kit_id": "f" * 32}, "names no kit made by this server"),
    ],
    ids=["sha256", "median", "unknown-key", "kit-version", "threads", "kit-id"],
)
def test_lut_import_refuses_a_tampered_file(
    profiled_db: Profiled, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = profiled_db.results_file(tmp_path, _tampered(profiled_db.results, **change))
    before = exported(REMOTE, tmp_path)

    output = fails("lut", "import", REMOTE, str(path), exit_code=2)

    assert message in output
    assert exported(REMOTE, tmp_path) == before


def test_lut_import_refuses_other_bad_files(profiled_db: Profiled, tmp_path: Path) -> None:
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ not json")
    good = profiled_db.results_file(tmp_path)
    before = {name: exported(name, tmp_path) for name in (LOCAL, REMOTE)}

    assert "not JSON" in fails("lut", "import", REMOTE, str(not_json), exit_code=2)
    assert "No such file" in fails("lut", "import", REMOTE, str(tmp_path / "absent.json"), exit_code=2)
    assert "another device's kit" in fails("lut", "import", LOCAL, str(good), exit_code=2)
    assert "no device named 'nowhere'" in fails("lut", "import", "nowhere", str(good), exit_code=2)
    assert {name: exported(name, tmp_path) for name in (LOCAL, REMOTE)} == before
