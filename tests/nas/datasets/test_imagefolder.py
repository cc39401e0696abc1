"""ImageFolder zips: layout, decoding, and every way an upload can be wrong or hostile."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.datasets import DatasetError, load_imagefolder_zip

Members = dict[str, bytes]


def test_happy_path(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    dataset = load_imagefolder_zip(make_zip(imagefolder_members))
    assert dataset.name == "pets"
    assert dataset.class_names == ("cat", "dog")
    assert dataset.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # Shorter sides are 12, 16, 20, 16, 16, 16: the median is 16.
    assert dataset.images.shape == (6, 3, 16, 16)
    assert dataset.images.dtype == np.uint8
    assert dataset.images.std() > 20  # decoded content, not blank


def test_resolution_argument_and_decoded_pixels(make_zip: Callable[..., Path], image_bytes) -> None:
    members = {f"{name}/{k}.png": image_bytes(10, 10, seed=k) for name in ("a", "b") for k in range(2)}
    dataset = load_imagefolder_zip(make_zip(members), resolution=10)
    expected = np.random.default_rng(0).integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
    assert np.array_equal(dataset.images[0], expected.transpose(2, 0, 1))  # lossless PNG, no resize
    assert load_imagefolder_zip(make_zip(members), resolution=24).resolution == 24


def test_grayscale_images_stay_single_channel(make_zip: Callable[..., Path], image_bytes) -> None:
    members = {f"{name}/{k}.png": image_bytes(mode="L", seed=k) for name in ("a", "b") for k in range(2)}
    assert load_imagefolder_zip(make_zip(members)).in_channels == 1
    members["a/colour.png"] = image_bytes(mode="RGB")
    assert load_imagefolder_zip(make_zip(members)).in_channels == 3


def test_one_common_top_folder_is_dropped(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    members = {f"pets/{name}": data for name, data in imagefolder_members.items()}
    members["pets/"] = b""
    assert load_imagefolder_zip(make_zip(members)).class_names == ("cat", "dog")


def test_hidden_and_macos_metadata_files_are_skipped(
    make_zip: Callable[..., Path], imagefolder_members: Members
) -> None:
    members = dict(imagefolder_members)
    members["cat/.DS_Store"] = b"\x00\x01junk"
    members["__MACOSX/cat/._a.png"] = b"junk"
    members["cat/.thumbnails/a.png"] = b"junk"
    assert len(load_imagefolder_zip(make_zip(members))) == 6


def test_member_order_does_not_matter(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    forward = load_imagefolder_zip(make_zip(imagefolder_members, name="a.zip"))
    backward = load_imagefolder_zip(make_zip(dict(reversed(imagefolder_members.items())), name="b.zip"))
    assert np.array_equal(forward.images, backward.images)
    assert np.array_equal(forward.labels, backward.labels)


@pytest.mark.parametrize(
    ("member", "data", "message"),
    [
        ("cat/broken.png", None, "member 'cat/broken.png' is corrupt"),
        ("cat/garbage.png", b"\x89PNG not really", "member 'cat/garbage.png' is not an image Pillow can read"),
        ("cat/readme.txt", b"these are my cats\n", "member 'cat/readme.txt' is not an image Pillow can read"),
        ("../evil.png", b"", "member '../evil.png' points outside the archive"),
        ("cat/../../evil.png", b"", "points outside the archive"),
        ("/etc/evil.png", b"", "member '/etc/evil.png' has an absolute path"),
        ("C:\\evil.png", b"", "has an absolute path"),
        ("labels.csv", b"a,b\n", "member 'labels.csv' is outside a class folder"),
        ("cat/kittens/d.png", b"", "member 'cat/kittens/d.png' is nested too deeply"),
    ],
)
def test_bad_members_are_named(
    make_zip: Callable[..., Path], imagefolder_members: Members, member: str, data: bytes | None, message: str
) -> None:
    members = dict(imagefolder_members)
    members[member] = data if data is not None else imagefolder_members["cat/a.png"][:60]  # truncated PNG
    with pytest.raises(DatasetError) as error:
        load_imagefolder_zip(make_zip(members))
    assert str(error.value).startswith("pets.zip: ")
    assert message in str(error.value)


def test_top_level_file_inside_the_common_folder(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    members = {f"pets/{name}": data for name, data in imagefolder_members.items()}
    members["pets/README"] = b"hello"
    with pytest.raises(DatasetError, match="member 'pets/README' is outside a class folder"):
        load_imagefolder_zip(make_zip(members))


def test_archive_over_the_size_limit(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    with pytest.raises(DatasetError, match=r"pets.zip: the archive is \d+ bytes, more than the limit of 500"):
        load_imagefolder_zip(make_zip(imagefolder_members), max_bytes=500)


def test_zip_bomb_is_refused_before_decoding(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    members = dict(imagefolder_members)
    members["cat/huge.bmp"] = bytes(5_000_000)  # compresses to a few kB
    path = make_zip(members)
    assert path.stat().st_size < 100_000
    with pytest.raises(DatasetError, match="uncompressed, more than the limit of 100000"):
        load_imagefolder_zip(path, max_bytes=100_000)


def test_decoded_size_over_the_limit(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    path = make_zip(imagefolder_members)
    with pytest.raises(DatasetError, match="use a smaller resolution"):
        load_imagefolder_zip(path, max_bytes=path.stat().st_size + 1_000_000, resolution=256)


def test_too_many_images(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    with pytest.raises(DatasetError, match="6 images, more than the limit of 5"):
        load_imagefolder_zip(make_zip(imagefolder_members), max_images=5)


def test_one_class_only(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    cats = {name: data for name, data in imagefolder_members.items() if name.startswith("cat/")}
    with pytest.raises(DatasetError, match=r"at least 2 classes with images, got 1: \['cat'\]"):
        load_imagefolder_zip(make_zip(cats))


def test_class_with_one_image(make_zip: Callable[..., Path], imagefolder_members: Members, image_bytes) -> None:
    members = dict(imagefolder_members)
    members["eel/only.png"] = image_bytes(seed=9)
    with pytest.raises(DatasetError, match=r"too few: 'eel' \(1\)"):
        load_imagefolder_zip(make_zip(members))


def test_empty_archive(make_zip: Callable[..., Path]) -> None:
    with pytest.raises(DatasetError, match="the archive holds no files"):
        load_imagefolder_zip(make_zip({"cat/": b""}))


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "photos.zip"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DatasetError, match="photos.zip: not a zip archive"):
        load_imagefolder_zip(path)


def test_crc_damage_names_the_member(tmp_path: Path, imagefolder_members: Members) -> None:
    path = tmp_path / "pets.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in imagefolder_members.items():
            archive.writestr(name, data)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("dog/c.png")
    raw[info.header_offset + 30 + len("dog/c.png") + 200] ^= 0xFF  # flip a byte inside the stored data
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="member 'dog/c.png' is corrupt"):
        load_imagefolder_zip(path)


def test_image_with_too_many_pixels(make_zip: Callable[..., Path], imagefolder_members: Members) -> None:
    members = dict(imagefolder_members)
    buffer = io.BytesIO()
    Image.new("L", (5000, 4000)).save(buffer, format="PNG")  # refused from its header, never decoded
    members["dog/big.png"] = buffer.getvalue()
    with pytest.raises(DatasetError, match="member 'dog/big.png' is 5000x4000, more than"):
        load_imagefolder_zip(make_zip(members))
