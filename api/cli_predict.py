"""`hwnas arch predict ARCH_ID IMAGE...`: classify image files with an architecture's downloaded model.

Downloads spec.json and model_uint8.onnx over HTTP (HWNAS_SERVER, HWNAS_API_KEY), decodes each image
with Pillow the way uploads were decoded (EXIF rotation, then 8-bit grayscale or RGB as the search's
dataset was), and runs the raw pixels through ONNX Runtime: the model does the rest of the
preprocessing itself. Nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from api.cli_common import cli_errors, console, print_json
from api.cli_searches import AsJson, arch_app

if TYPE_CHECKING:
    import numpy as np

    from nas.preprocessing import Preprocessing


@dataclass(frozen=True)
class Prediction:
    image: str
    ranked: list[tuple[int, str, float]]  # (label, class name, probability), most probable first

    def as_json(self) -> dict[str, Any]:
        label, name, probability = self.ranked[0]
        return {
            "image": self.image,
            "label": label,
            "class_name": name,
            "probability": probability,
            "top": [{"label": k, "class_name": n, "probability": p} for k, n, p in self.ranked],
        }


def decode_image(path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """uint8 (H, W, C) pixels of an image file, in the colour mode the network's dataset had."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from nas.datasets.imagefolder import convert_like_upload

    try:
        with Image.open(path) as image:
            image.load()
            converted = convert_like_upload(image, grayscale=preprocessing.image_channels == 1)
    except (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError, OSError) as error:
        raise ValueError(f"{path}: not an image Pillow can read ({type(error).__name__}: {error})") from None
    pixels = np.asarray(converted, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def predict_images(
    model_bytes: bytes,
    preprocessing: Preprocessing,
    class_names: tuple[str, ...],
    images: list[tuple[str, np.ndarray]],
    top: int,
) -> list[Prediction]:
    """Each image (any size) through model_uint8.onnx, one at a time; the `top` most probable classes."""
    import numpy as np

    from nas.export import PROBABILITIES, UINT8_INPUT
    from search_spaces.onnx_export import cpu_session

    session = cpu_session(model_bytes)
    predictions = []
    for name, pixels in images:
        probabilities = session.run([PROBABILITIES], {UINT8_INPUT: pixels[None]})[0][0]
        order = np.argsort(-probabilities, kind="stable")[:top]
        ranked = [(int(k), class_names[k], float(probabilities[k])) for k in order]
        predictions.append(Prediction(name, ranked))
    return predictions


@arch_app.command("predict")
@cli_errors
def arch_predict(
    architecture_id: str,
    images: Annotated[list[Path], typer.Argument(help="image files (PNG, JPEG, ...), any size")],
    top: Annotated[int, typer.Option(min=1, help="how many classes to show per image")] = 1,
    as_json: AsJson = False,
) -> None:
    """Classify image files with an architecture's model (downloaded now; no files are written)."""
    from api.client import ApiClient
    from nas.preprocessing import read_spec_document

    missing = [str(path) for path in images if not path.is_file()]
    if missing:
        raise ValueError(f"no such file: {', '.join(missing)}")
    with ApiClient() as api:
        arch = api.get_json(f"/v1/architectures/{architecture_id}")
        if "onnx_uint8" not in arch["files"]:
            raise ValueError(
                f"architecture {architecture_id} was exported before models took raw images "
                "(no model_uint8.onnx); run its search again, or feed model.onnx by hand"
            )
        document = read_spec_document(api.request("GET", arch["links"]["spec"]).content)
        if document.preprocessing is None or document.class_names is None:
            raise ValueError(f"the spec.json of architecture {architecture_id} has no preprocessing or class names")
        pixels = [(str(path), decode_image(path, document.preprocessing)) for path in images]
        model_bytes = api.request("GET", arch["links"]["onnx_uint8"]).content
    predictions = predict_images(
        model_bytes, document.preprocessing, document.class_names, pixels, min(top, len(document.class_names))
    )
    if as_json:
        print_json({"id": architecture_id, "predictions": [p.as_json() for p in predictions]})
        return
    table = Table("image", "class", "probability", title=f"architecture {architecture_id}")
    for prediction in predictions:
        for rank, (_, name, probability) in enumerate(prediction.ranked):
            table.add_row(escape(prediction.image) if rank == 0 else "", escape(name), f"{probability:.3f}")
    console.print(table)
