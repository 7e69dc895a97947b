"""medzoo.io: readers name the file and the problem; writers are atomic."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from medzoo.errors import InputError
from medzoo.io import atomic_path, atomic_write_json, list_images, read_mask, read_rgb


def _png(path: Path, arr: np.ndarray) -> Path:
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), arr)
    return path


def test_read_rgb_roundtrip(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = read_rgb(_png(tmp_path / "a.png", rgb))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)  # channel order is RGB, not OpenCV's BGR


@pytest.mark.parametrize(
    ("arr", "needle"),
    [
        (np.zeros((8, 8), np.uint8), "grayscale"),
        (np.zeros((8, 8, 3), np.uint16), "16-bit"),
        (np.dstack([np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 100, np.uint8)]), "transparent"),
    ],
)
def test_read_rgb_refuses_bad_images(tmp_path: Path, arr: np.ndarray, needle: str) -> None:
    p = _png(tmp_path / "bad.png", arr)
    with pytest.raises(InputError, match=needle) as ei:
        read_rgb(p)
    assert str(p) in str(ei.value)


def test_opaque_rgba_is_accepted(tmp_path: Path) -> None:
    arr = np.dstack([np.full((8, 8, 3), 7, np.uint8), np.full((8, 8), 255, np.uint8)])
    assert read_rgb(_png(tmp_path / "o.png", arr)).shape == (8, 8, 3)


def test_truncated_and_empty_files(tmp_path: Path) -> None:
    p = _png(tmp_path / "t.png", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.png"):
        read_rgb(p)
    e = tmp_path / "e.png"
    e.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_rgb(e)
    with pytest.raises(InputError, match="no such file"):
        read_rgb(tmp_path / "missing.png")


def test_read_mask_binary_and_colour_refusal(tmp_path: Path) -> None:
    m = np.zeros((10, 10), np.uint8)
    m[2:5] = 255
    out = read_mask(_png(tmp_path / "m.png", m))
    assert set(np.unique(out)) == {0, 1} and out[3, 3] == 1 and out[8, 8] == 0
    colour = np.zeros((10, 10, 3), np.uint8)
    colour[..., 0] = 255
    with pytest.raises(InputError, match="colour channels"):
        read_mask(_png(tmp_path / "c.png", colour))


def test_list_images_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files"):
        list_images(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        list_images(tmp_path / "nope")


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_files_get_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    umask = os.umask(0o022)
    try:
        p = atomic_write_json(tmp_path / "x.json", {})
    finally:
        os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_read_csv_table_checks(tmp_path: Path) -> None:
    from medzoo.io import read_csv_table

    with pytest.raises(InputError, match="no such folder"):
        read_csv_table(tmp_path / "nope", "t.csv", ["a"])
    with pytest.raises(InputError, match="no t.csv"):
        read_csv_table(tmp_path, "t.csv", ["a"])
    (tmp_path / "t.csv").write_text("# comment\na,b\n")
    with pytest.raises(InputError, match="no rows"):
        read_csv_table(tmp_path, "t.csv", ["a"])
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"lacks columns \['c'\]"):
        read_csv_table(tmp_path, "t.csv", ["a", "c"])
    assert read_csv_table(tmp_path, "t.csv", ["a"]) == [{"a": "1", "b": "2"}]
