"""A download that runs as it ships, tried from outside the service: upload real digits (8x8 uint8),
run a tiny search, download spec.json and the models over HTTP, and classify the raw held-out images
with ONNX Runtime using nothing but what the download says: the service's accuracy comes back. The
same from the command line (`hwnas arch predict`), and class names that cannot ship are refused at
upload with a 422 naming `class_names`.

The searches run on SQLite only: what is tested here is the files, not the database (the search
journeys run on both)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner, Result

from api import cli_common
from api.cli import app
from nas.datasets import load_npz
from tests.api.search_helpers import fastest_ms, search_body, wait_finished
from tests.markers import SQLITE_ONLY

CLASS_NAMES = ("zero", "one", "two")
PER_CLASS = 60


def digits_npz(path: Path) -> Path:
    """Three classes of scikit-learn's real 8x8 digits, 60 each, as uint8 with names."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == label)[:PER_CLASS] for label in range(3)])
    x = np.rint(digits.images[keep] * (255.0 / 16.0)).astype(np.uint8)  # 0-16 -> 0-255, NHW grayscale
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=digits.target[keep], class_names=np.array(CLASS_NAMES))
    path.write_bytes(buffer.getvalue())
    return path


def run_search(server, data: Path, seed: int = 0) -> dict[str, Any]:
    """Upload `data`, search on it to the end; the winner's architecture resource."""
    alice = server.client("alice")
    uploaded = alice.post("/v1/datasets", files={"file": (data.name, data.read_bytes())})
    assert uploaded.status_code == 201, uploaded.text
    body = search_body(
        dataset=uploaded.json()["id"], budget_ms=round(3.0 * fastest_ms(server), 6), seed=seed, netadapt=False,
        baseline=False,
    )  # fmt: skip
    submitted = alice.post("/v1/searches", json=body)
    assert submitted.status_code == 202, submitted.text
    final = wait_finished(alice, submitted.json()["id"])
    assert final["status"] == "succeeded", final["error"]
    return alice.get(f"/v1/architectures/{final['winner_id']}").json()


def held_out(data: Path, arch: dict[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The raw held-out images (uint8 NHWC, as uploaded), their labels, and the accuracy the service
    reported on them."""
    dataset = load_npz(data)
    raw = dataset.images.transpose(0, 2, 3, 1)
    positions = np.asarray(arch["test_indices"], dtype=np.int64)
    assert len(positions) > 0  # the search held a test split out
    return raw[positions], dataset.labels[positions], float(arch["test_accuracy"])


def by_hand(raw: np.ndarray, preprocessing: dict[str, Any]) -> np.ndarray:
    """model.onnx's input from raw images, following spec.json's preprocessing as a user would."""
    assert preprocessing["resize"] == {
        "method": "bilinear", "align_corners": False, "antialias": "when_shrinking", "aspect_ratio": "stretch"
    }  # fmt: skip
    size = preprocessing["resolution"]
    x = torch.from_numpy(raw.transpose(0, 3, 1, 2).astype(np.float32)) / preprocessing["divide_by"]
    shrinking = size < x.shape[2] or size < x.shape[3]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)
    x = x.repeat(1, len(preprocessing["channel_order"]) // x.shape[1], 1, 1)
    mean = torch.tensor(preprocessing["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(1, -1, 1, 1)
    return ((x - mean) / std).numpy()


@SQLITE_ONLY
def test_raw_held_out_images_through_the_download_get_the_reported_accuracy(search_server, tmp_path: Path) -> None:
    data = digits_npz(tmp_path / "digits.npz")
    arch = run_search(search_server, data)
    assert arch["files"] == ["onnx", "onnx_uint8", "spec", "weights"]
    assert arch["links"]["onnx_uint8"] == f"/v1/architectures/{arch['id']}/onnx-uint8"

    # --- download, over HTTP only ---------------------------------------------------------------------
    alice = search_server.client("alice")
    files = {}
    for kind, name in (("spec", "spec.json"), ("onnx", "model.onnx"), ("onnx_uint8", "model_uint8.onnx")):
        response = alice.get(arch["links"][kind])
        assert response.status_code == 200, response.text
        assert f'filename="{name}"' in response.headers["content-disposition"]
        files[kind] = response.content
    spec = json.loads(files["spec"])
    preprocessing, class_names = spec["preprocessing"], spec["class_names"]
    assert class_names == list(CLASS_NAMES) and preprocessing["image_channels"] == 1
    assert preprocessing["resolution"] == spec["resolution"] == 16 and preprocessing["dataset_resolution"] == 8

    # --- raw held-out images through model_uint8.onnx ---------------------------------------------------
    raw, labels, reported = held_out(data, arch, seed=0)
    assert raw.dtype == np.uint8 and raw.shape[1:] == (8, 8, 1) and len(raw) >= 30
    session = ort.InferenceSession(files["onnx_uint8"], providers=["CPUExecutionProvider"])
    (image_input,) = session.get_inputs()
    assert image_input.type == "tensor(uint8)" and image_input.shape == ["batch", "height", "width", 1]
    probabilities = session.run(["probabilities"], {image_input.name: raw})[0]
    predicted = [class_names[k] for k in probabilities.argmax(axis=1)]
    truth = [CLASS_NAMES[k] for k in labels]
    accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
    print(f"held out: {len(raw)} images, ONNX Runtime from raw pixels {accuracy:.4f}, service reported {reported:.4f}")
    assert abs(accuracy - reported) <= 1.0 / len(raw) + 1e-9, (accuracy, reported)
    assert accuracy > 1.0 / 3  # better than guessing: the preprocessing is right

    # --- the same images through model.onnx, preprocessed by hand from spec.json ------------------------
    floats = by_hand(raw, preprocessing)
    float_session = ort.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"])
    logits = np.concatenate([float_session.run(None, {"input": floats[i : i + 1]})[0] for i in range(len(floats))])
    uint8_logits = session.run(["logits"], {image_input.name: raw})[0]
    np.testing.assert_allclose(uint8_logits, logits, atol=1e-4)
    metadata = ort.InferenceSession(files["onnx"], providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(metadata.custom_metadata_map["hwnas.preprocessing"]) == preprocessing
    assert json.loads(metadata.custom_metadata_map["hwnas.class_names"]) == class_names


# --- the command line ------------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli(search_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run `hwnas ...` against the live server as alice."""
    monkeypatch.setenv("HWNAS_SERVER", search_server.url)
    monkeypatch.setenv("HWNAS_API_KEY", search_server.tokens["alice"])
    for console in (cli_common.console, cli_common.err_console):
        monkeypatch.setattr(console, "_width", 200)

    def invoke(*args: str) -> Result:
        result = runner.invoke(app, list(args))
        assert "Traceback" not in result.output, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    return invoke


def _save(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(pixels).save(path)
    return path


@SQLITE_ONLY
def test_arch_predict_classifies_image_files(cli, search_server, tmp_path: Path) -> None:
    data = digits_npz(tmp_path / "digits.npz")
    arch = run_search(search_server, data, seed=1)
    raw, labels, _ = held_out(data, arch, seed=1)
    images = [_save(raw[i, :, :, 0], tmp_path / f"digit{i}.png") for i in range(4)]
    # A colour photo-like file of another size: decoded to grayscale ("L") like the dataset, then resized.
    big = np.asarray(Image.fromarray(raw[4, :, :, 0]).resize((40, 30), Image.Resampling.BILINEAR).convert("RGB"))
    images.append(_save(big, tmp_path / "big.jpg"))

    result = cli("arch", "predict", arch["id"], *map(str, images), "--json", "--top", "3")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["id"] == arch["id"] and [p["image"] for p in answer["predictions"]] == list(map(str, images))
    session = ort.InferenceSession(
        search_server.client("alice").get(arch["links"]["onnx_uint8"]).content, providers=["CPUExecutionProvider"]
    )
    for path, prediction in zip(images, answer["predictions"], strict=True):
        pixels = np.asarray(Image.open(path).convert("L"))[None, :, :, None]
        probabilities = session.run(["probabilities"], {"image": pixels})[0][0]
        assert prediction["class_name"] == CLASS_NAMES[int(probabilities.argmax())]
        assert prediction["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
        assert [t["class_name"] for t in prediction["top"]][0] == prediction["class_name"]
        assert sorted(t["class_name"] for t in prediction["top"]) == sorted(CLASS_NAMES)

    table = cli("arch", "predict", arch["id"], str(images[0]))
    assert table.exit_code == 0, table.output
    expected = answer["predictions"][0]
    assert "digit0.png" in table.stdout and expected["class_name"] in table.stdout
    assert f"{expected['probability']:.3f}" in table.stdout

    # Bad input: one line, exit code 2, no traceback.
    missing = cli("arch", "predict", arch["id"], str(tmp_path / "gone.png"))
    assert missing.exit_code == 2 and "no such file" in missing.output
    (tmp_path / "notes.png").write_text("not an image")
    broken = cli("arch", "predict", arch["id"], str(images[0]), str(tmp_path / "notes.png"))
    assert broken.exit_code == 2 and "not an image Pillow can read" in " ".join(broken.output.split())
    unknown = cli("arch", "predict", "nope", str(images[0]))
    assert unknown.exit_code == 2 and "no architecture" in unknown.output


def test_class_names_that_cannot_ship_are_refused_at_upload(live_server) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 8, 8), dtype=np.uint8)
    alice = live_server.client("alice")
    for names, words in ((["ok", "bell\x07", "b", "c"], "not printable"), (["ok", "n" * 65, "b", "c"], "more than 64")):
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=np.repeat(np.arange(4), 2), class_names=np.array(names))
        response = alice.post("/v1/datasets", files={"file": ("named.npz", buffer.getvalue())})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == "class_names" and words in response.json()["detail"]
    assert alice.get("/v1/datasets").json()["total"] == 0
    directory = Path(live_server.settings.dataset_dir)
    assert not directory.exists() or list(directory.rglob("*")) == []
