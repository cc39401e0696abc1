"""Profiling kits: building the zip, running its stand-alone runner, and refusing bad results files."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import onnxruntime
import pytest

from latency_lut import kit_runner
from latency_lut.device import Device
from latency_lut.kit import (
    KIT_FORMAT,
    KIT_VERSION,
    RESULTS_FORMAT,
    KitImportError,
    KitManifest,
    build_kit,
    parse_results_or_raise,
    read_manifest_from_kit,
    validate_results,
)
from latency_lut.kit_runner import TimingPolicy
from search_spaces.space import get_space

QUICK = TimingPolicy(warmup_runs=1, min_runs=3, max_runs=10, batch_runs=3, max_seconds=0.2)
DEVICE = Device(name="pixel-7.test", threads=1)
SITE_DIRS = sorted({str(Path(numpy.__file__).parent.parent), str(Path(onnxruntime.__file__).parent.parent)})

# Runs a script with only the standard library plus the site-packages of numpy and onnxruntime on the
# path (`-I -S`: no cwd, no PYTHON* variables, no .pth files, hence no editable install of hwnas), and
# refuses any other third-party import, so the runner provably needs nothing a phone would lack.
_ISOLATED_BOOT = """
import importlib.machinery, runpy, sys
site_dirs = sys.argv[1].split("\\n")
sys.path.extend(site_dirs)

class OnlyNumpyAndOnnxruntime:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ("numpy", "onnxruntime"):
            return None
        if importlib.machinery.PathFinder.find_spec(top, site_dirs) is not None:
            raise ImportError(f"the runner imported {name!r}, which a bare device does not have")
        return None

sys.meta_path.insert(0, OnlyNumpyAndOnnxruntime())
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _six_keys() -> list[str]:
    keys = get_space("mobilenet_v3_small").with_options(resolutions=[32], widths=[0.75], num_classes=10).block_keys()
    stem_and_head = [key for key in keys if not key.startswith("ir_")]
    blocks = [key for key in keys if key.startswith("ir_")]
    return sorted(stem_and_head + [blocks[0], blocks[7], blocks[len(blocks) // 2], blocks[-1]])


KEYS = _six_keys()


def run_isolated(kit_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", _ISOLATED_BOOT, "\n".join(SITE_DIRS), "runner.py", *args],
        cwd=kit_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )


def unzip(zip_path: Path, dest: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KitManifest, list[tuple[int, int]]]:
    """One kit for the module: duplicated and unsorted keys, progress recorded."""
    out = tmp_path_factory.mktemp("kit") / "kit.zip"
    calls: list[tuple[int, int]] = []
    keys = list(reversed(KEYS)) + KEYS[:2]
    manifest = build_kit(DEVICE, keys, out, policy=QUICK, progress=lambda done, total: calls.append((done, total)))
    return out, manifest, calls


@pytest.fixture(scope="module")
def manifest(built: tuple[Path, KitManifest, list[tuple[int, int]]]) -> KitManifest:
    return built[1]


@pytest.fixture(scope="module")
def measured(
    built: tuple[Path, KitManifest, list[tuple[int, int]]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], str]:
    """The kit run once, end to end, by its extracted runner in an isolated interpreter."""
    kit_dir = unzip(built[0], tmp_path_factory.mktemp("phone"))
    completed = run_isolated(kit_dir)
    return completed, (kit_dir / "results.json").read_text()


def good_payload(manifest: KitManifest) -> dict[str, Any]:
    return {
        "format": RESULTS_FORMAT,
        "kit_version": KIT_VERSION,
        "kit_id": manifest.kit_id,
        "device": manifest.device,
        "runtime_version": onnxruntime.__version__,
        "threads": manifest.threads,
        "results": [
            {"key": model.key, "sha256": model.sha256, "median_ms": 0.5 + i, "iqr_ms": 0.01, "runs": 15}
            for i, model in enumerate(manifest.models)
        ],
    }


# --- building ----------------------------------------------------------------------------------------


def test_kit_holds_models_manifest_runner_and_readme(built: tuple[Path, KitManifest, list[tuple[int, int]]]) -> None:
    zip_path, manifest, calls = built
    assert manifest.format == KIT_FORMAT and manifest.kit_version == KIT_VERSION
    assert manifest.keys == KEYS  # duplicates dropped, sorted
    assert len(manifest.kit_id) == 32 and manifest.device == DEVICE.name and manifest.threads == DEVICE.threads
    assert TimingPolicy(**manifest.policy) == QUICK
    assert calls == [(i, len(KEYS)) for i in range(1, len(KEYS) + 1)]
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        assert names == {"manifest.json", "runner.py", "README.txt"} | {f"models/{i:05d}.onnx" for i in range(6)}
        for model in manifest.models:
            assert hashlib.sha256(archive.read(model.file)).hexdigest() == model.sha256
        assert archive.read("runner.py").decode() == Path(kit_runner.__file__).read_text()
        assert KitManifest.from_json(archive.read("manifest.json")) == manifest
        readme = archive.read("README.txt").decode()
    assert "pip install onnxruntime numpy" in readme and "python runner.py" in readme
    assert f"hwnas lut import {DEVICE.name} results.json" in readme and "$" not in readme
    assert read_manifest_from_kit(zip_path) == manifest
    assert KitManifest.from_json(manifest.to_json()) == manifest


def test_kit_models_compress_to_under_a_quarter(built: tuple[Path, KitManifest, list[tuple[int, int]]]) -> None:
    with zipfile.ZipFile(built[0]) as archive:
        models = [info for info in archive.infolist() if info.filename.startswith("models/")]
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in models)
    assert sum(info.compress_size for info in models) < 0.25 * sum(info.file_size for info in models)


def test_build_kit_names_every_bad_key_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "kit.zip"
    with pytest.raises(ValueError) as raised:
        build_kit(DEVICE, [KEYS[0], "conv_banana@1x1x1", "ir_k4@8x8x8"], out, policy=QUICK)
    assert "conv_banana@1x1x1" in str(raised.value) and "ir_k4@8x8x8" in str(raised.value)
    with pytest.raises(ValueError, match="at least one"):
        build_kit(DEVICE, [], out, policy=QUICK)
    assert list(tmp_path.iterdir()) == []


def test_read_manifest_refuses_a_file_that_is_not_a_kit(tmp_path: Path) -> None:
    not_zip = tmp_path / "kit.zip"
    not_zip.write_text("hello")
    with pytest.raises(ValueError, match="not a zip"):
        read_manifest_from_kit(not_zip)
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    with pytest.raises(ValueError, match="manifest.json"):
        read_manifest_from_kit(empty)


# --- running on the "phone" --------------------------------------------------------------------------


def test_isolated_interpreter_offers_only_stdlib_numpy_and_onnxruntime(tmp_path: Path) -> None:
    """Proves the runner tests mean something, although hwnas is installed editable in this venv."""
    probe = tmp_path / "runner.py"
    probe.write_text(
        "import importlib\n"
        "import numpy, onnxruntime, argparse, json\n"
        "for name in ('search_spaces', 'latency_lut', 'pydantic', 'torch', 'onnx'):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        print('refused', name)\n"
    )
    completed = run_isolated(tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split("\n")[:-1] == [
        f"refused {name}" for name in ("search_spaces", "latency_lut", "pydantic", "torch", "onnx")
    ]


def test_runner_measures_every_model_standalone(
    manifest: KitManifest, measured: tuple[subprocess.CompletedProcess[str], str]
) -> None:
    completed, results_text = measured
    assert completed.returncode == 0, completed.stderr
    assert f"[6/6] {manifest.keys[-1]}" in completed.stdout
    imported = validate_results(manifest, results_text)
    assert imported.ok, imported.problems
    assert imported.coverage == 1.0 and imported.covered == imported.total == 6
    assert set(imported.entries) == set(KEYS)
    for entry in imported.entries.values():
        assert entry.median_ms > 0 and entry.runs >= QUICK.min_runs and entry.source == "kit"
        assert entry.runtime_version == onnxruntime.__version__


def test_runner_resumes_after_a_partial_run(
    built: tuple[Path, KitManifest, list[tuple[int, int]]], tmp_path: Path
) -> None:
    kit_dir = unzip(built[0], tmp_path)
    first = run_isolated(kit_dir, "--keys-limit", "3")
    assert first.returncode == 0, first.stderr
    partial = json.loads((kit_dir / "results.json").read_text())
    assert [result["key"] for result in partial["results"]] == KEYS[:3]

    second = run_isolated(kit_dir)
    assert second.returncode == 0, second.stderr
    assert "3 already measured" in second.stdout
    assert [line.split()[1] for line in second.stdout.splitlines() if line.startswith("[")] == KEYS[3:]
    final = json.loads((kit_dir / "results.json").read_text())
    assert [result["key"] for result in final["results"]] == KEYS
    assert final["results"][:3] == partial["results"]
    assert validate_results(built[1], json.dumps(final)).coverage == 1.0


def test_runner_skips_a_tampered_model(built: tuple[Path, KitManifest, list[tuple[int, int]]], tmp_path: Path) -> None:
    kit_dir = unzip(built[0], tmp_path)
    tampered = built[1].models[2]
    with open(kit_dir / tampered.file, "ab") as stream:
        stream.write(b"\0")
    completed = run_isolated(kit_dir)
    assert completed.returncode == 1
    assert tampered.key in completed.stderr and "checksum" in completed.stderr
    results = json.loads((kit_dir / "results.json").read_text())
    assert tampered.key not in {result["key"] for result in results["results"]}
    imported = validate_results(built[1], json.dumps(results))
    assert imported.ok and imported.covered == 5 and tampered.key not in imported.entries


def test_runner_refuses_to_overwrite_results_of_another_kit(
    built: tuple[Path, KitManifest, list[tuple[int, int]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit_dir = unzip(built[0], tmp_path / "kit")
    foreign = tmp_path / "other.json"
    payload = good_payload(built[1]) | {"kit_id": "0" * 32}
    foreign.write_text(json.dumps(payload))
    assert kit_runner.main(["--kit-dir", str(kit_dir), "--output", str(foreign)]) == 2
    assert "another kit" in capsys.readouterr().err
    assert json.loads(foreign.read_text()) == payload


# --- importing results -------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _set_entry(field: str, value: Any) -> Mutation:
    def mutate(payload: dict[str, Any]) -> None:
        payload["results"][1][field] = value

    return mutate


def _drop_entry(field: str) -> Mutation:
    def mutate(payload: dict[str, Any]) -> None:
        del payload["results"][1][field]

    return mutate


def _set_top(field: str, value: Any) -> Mutation:
    return lambda payload: payload.__setitem__(field, value)


KEY1 = KEYS[1]
REFUSALS: dict[str, tuple[Mutation, list[str]]] = {
    "wrong format": (_set_top("format", "hwnas-lut"), ["'format'"]),
    "wrong kit_version": (_set_top("kit_version", 2), ["'kit_version'"]),
    "bool kit_version": (_set_top("kit_version", True), ["'kit_version'"]),
    "other kit_id": (_set_top("kit_id", "f" * 32), ["'kit_id'"]),
    "other device": (_set_top("device", "someone-else"), ["'device'"]),
    "other threads": (_set_top("threads", 4), ["'threads'"]),
    "results not a list": (_set_top("results", {KEY1: 1.0}), ["'results'", "list"]),
    "entry not an object": (lambda p: p["results"].__setitem__(1, [KEY1, 1.0]), ["results[1]", "object"]),
    "key not a string": (_set_entry("key", 7), ["results[1]", "'key'"]),
    "unknown key": (_set_entry("key", "ir_k3_s1_e16_c16_re@8x8x16"), ["ir_k3_s1_e16_c16_re@8x8x16", "not in kit"]),
    "duplicate key": (lambda p: p["results"].append(copy.deepcopy(p["results"][1])), [KEY1, "duplicated"]),
    "missing median_ms": (_drop_entry("median_ms"), [KEY1, "'median_ms'"]),
    "missing iqr_ms": (_drop_entry("iqr_ms"), [KEY1, "'iqr_ms'"]),
    "missing runs": (_drop_entry("runs"), [KEY1, "'runs'"]),
    "missing sha256": (_drop_entry("sha256"), [KEY1, "'sha256'"]),
    "median NaN": (_set_entry("median_ms", float("nan")), [KEY1, "'median_ms'", "nan"]),
    "median Infinity": (_set_entry("median_ms", float("inf")), [KEY1, "'median_ms'", "inf"]),
    "median zero": (_set_entry("median_ms", 0), [KEY1, "'median_ms'"]),
    "median negative": (_set_entry("median_ms", -1.5), [KEY1, "'median_ms'"]),
    "median string": (_set_entry("median_ms", "0.4"), [KEY1, "'median_ms'"]),
    "median bool": (_set_entry("median_ms", True), [KEY1, "'median_ms'"]),
    "iqr NaN": (_set_entry("iqr_ms", float("nan")), [KEY1, "'iqr_ms'"]),
    "iqr -Infinity": (_set_entry("iqr_ms", float("-inf")), [KEY1, "'iqr_ms'"]),
    "iqr negative": (_set_entry("iqr_ms", -0.01), [KEY1, "'iqr_ms'"]),
    "iqr null": (_set_entry("iqr_ms", None), [KEY1, "'iqr_ms'"]),
    "runs zero": (_set_entry("runs", 0), [KEY1, "'runs'"]),
    "runs fractional": (_set_entry("runs", 2.5), [KEY1, "'runs'"]),
    "runs bool": (_set_entry("runs", True), [KEY1, "'runs'"]),
    "runs string": (_set_entry("runs", "15"), [KEY1, "'runs'"]),
    "tampered sha256": (_set_entry("sha256", "0" * 64), [KEY1, "'sha256'"]),
    "missing runtime_version": (lambda p: p.pop("runtime_version"), ["'runtime_version'"]),
    "runtime_version not a string": (_set_top("runtime_version", 1.32), ["'runtime_version'"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refusal_names_key_and_field_and_stores_nothing(manifest: KitManifest, case: str) -> None:
    mutate, expected = REFUSALS[case]
    payload = good_payload(manifest)
    mutate(payload)
    imported = validate_results(manifest, json.dumps(payload))
    assert not imported.ok and imported.entries == {}
    assert any(all(part in problem for part in expected) for problem in imported.problems), imported.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [("{not json", "not JSON"), (b"\xff\xfe\x00", "not JSON"), ("[1, 2]", "JSON object"), ("null", "JSON object")],
)
def test_refuses_text_that_is_not_a_json_object(manifest: KitManifest, text: str | bytes, expected: str) -> None:
    imported = validate_results(manifest, text)
    assert not imported.ok and imported.entries == {} and expected in imported.problems[0]


def test_every_problem_is_reported_not_just_the_first(manifest: KitManifest) -> None:
    payload = good_payload(manifest)
    payload["device"] = "someone-else"
    payload["results"][0]["median_ms"] = float("nan")
    payload["results"][2]["runs"] = 0
    payload["results"][3]["sha256"] = "0" * 64
    payload["results"][3]["iqr_ms"] = -1
    imported = validate_results(manifest, json.dumps(payload))
    assert imported.entries == {} and len(imported.problems) == 5
    for index, field in [(0, "median_ms"), (2, "runs"), (3, "sha256"), (3, "iqr_ms")]:
        key = manifest.keys[index]
        assert any(key in problem and f"'{field}'" in problem for problem in imported.problems)
    assert imported.covered == 3  # the untouched entries, reported although nothing is stored


def test_partial_results_are_accepted_with_their_coverage(manifest: KitManifest) -> None:
    payload = good_payload(manifest)
    payload["results"] = payload["results"][:2]
    imported = parse_results_or_raise(manifest, json.dumps(payload).encode())
    assert imported.ok and imported.covered == 2 and imported.coverage == pytest.approx(2 / 6)
    assert set(imported.entries) == set(KEYS[:2])
    assert imported.entries[KEYS[1]].median_ms == 1.5 and imported.entries[KEYS[1]].source == "kit"


def test_parse_results_or_raise_carries_every_problem(manifest: KitManifest) -> None:
    payload = good_payload(manifest)
    payload["kit_id"] = "f" * 32
    payload["results"][1]["median_ms"] = -1
    with pytest.raises(KitImportError) as raised:
        parse_results_or_raise(manifest, json.dumps(payload))
    assert isinstance(raised.value, ValueError) and len(raised.value.problems) == 2
    assert "'kit_id'" in str(raised.value) and KEY1 in str(raised.value)


def test_results_written_by_the_runner_are_plain_json(measured: tuple[subprocess.CompletedProcess[str], str]) -> None:
    """No NaN literals or other Python-only JSON: any server or tool can read the upload."""
    payload = json.loads(measured[1], parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert payload["format"] == RESULTS_FORMAT and payload["device"] == DEVICE.name
