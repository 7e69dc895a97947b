"""File helpers shared by every task: atomic writes and image reading that fails loudly.

Every writer here writes to a temporary file in the destination folder and renames it into place, so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medzoo.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    final = Path(path)
    check_writable(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    except OSError as e:
        raise InputError(f"cannot write here: {e.strerror or e} ({e.filename or final.parent})", final) from e
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a baton or mask must be readable like any file
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def command_line(argv: Sequence[str] | None = None) -> str:
    """This process's command as run (``python <script> <args>``, shell-quoted; ``argv`` replaces the arguments):
    what a recipe or benchmark records as the command behind a model card or result file."""
    import shlex
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *args])


def output_stem(path: str | Path) -> str:
    """The name every task writes the outputs of input ``path`` under: its file name without a final ``.gz``, then
    without its last suffix (``case.v1.nii.gz`` -> ``case.v1``, ``x.png`` / ``x.dcm`` / folder ``x`` -> ``x``). The
    CLI refuses two inputs with the same stem, so one never overwrites the other's outputs."""
    return Path(Path(path).name.removesuffix(".gz")).stem


def check_writable(path: str | Path, *, overwrite: bool = True, what: str = "output") -> Path:
    """Refuse, before any work, an output path that cannot become a file: an existing folder, a parent that is a
    file, an existing file when ``overwrite`` is False."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"is a folder; the {what} must be a file name", p)
    if p.exists() and not overwrite:
        raise InputError("already exists; choose another name or pass --overwrite", p)
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write the {what} here: {parent} is a file, not a folder", p)
            break
    return p


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsync'd) and return ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open_any(path: Path) -> np.ndarray:
    """Decode an image file with OpenCV (all depths, alpha kept), falling back to PIL for GIF."""
    import cv2

    if not path.is_file():
        raise InputError("no such file", path)
    if path.stat().st_size == 0:
        raise InputError("empty file (0 bytes)", path)
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:  # OpenCV cannot read GIF; PIL can, and tells truncated files apart
        try:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("P", "1", "L", "LA"):
                    im = im.convert("L")
                arr = np.asarray(im)
                return arr
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
            raise InputError(f"cannot decode image ({type(e).__name__}: {e}); the file is truncated or not an image", path) from e
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]  # BGR -> RGB
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]  # BGRA -> RGBA
    # OpenCV decodes a truncated PNG/JPEG partially with only a warning; PIL's full load catches it.
    if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        try:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
        except Exception as e:  # noqa: BLE001
            raise InputError(f"image is truncated or corrupt ({type(e).__name__}: {e})", path) from e
    return np.ascontiguousarray(arr)


def read_rgb(path: str | Path, *, allow_gray: bool = False) -> np.ndarray:
    """Read a colour photograph as ``H x W x 3`` uint8 RGB.

    Raises:
        InputError: unreadable/truncated file, 16-bit data, grayscale (unless ``allow_gray``), or an RGBA image
            whose alpha channel is not fully opaque (transparency would be silently lost).
    """
    p = Path(path)
    arr = _open_any(p)
    if arr.dtype != np.uint8:
        raise InputError(f"expected an 8-bit image, got {arr.dtype} ({arr.dtype.itemsize * 8}-bit); convert it to 8-bit RGB first", p)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        if not allow_gray:
            raise InputError("expected a colour (RGB) image, got a single-channel grayscale image", p)
        arr = np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2)
    elif arr.shape[2] == 4:
        if arr[..., 3].min() < 255:
            raise InputError("RGBA image with transparent pixels; flatten it to RGB first", p)
        arr = arr[..., :3]
    elif arr.shape[2] != 3:
        raise InputError(f"expected 3 colour channels, got {arr.shape[2]}", p)
    return np.ascontiguousarray(arr)


def read_mask(path: str | Path, *, kind: Literal["binary", "soft"] = "binary", threshold: int = 128) -> np.ndarray:
    """Read a label mask as ``H x W`` uint8: ``binary`` gives {0, 1} (pixel >= ``threshold``), ``soft`` gives
    the raw 0..255 values. An RGB mask is accepted only if its channels are equal.

    Raises:
        InputError: unreadable/truncated, 16-bit, or a colour image that is not a mask.
    """
    p = Path(path)
    arr = _open_any(p)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise InputError(f"expected an 8-bit mask, got {arr.dtype}", p)
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[..., :3]
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise InputError("mask has differing colour channels; expected a single-channel (grayscale) mask", p)
        arr = arr[..., 0]
    if kind == "soft":
        return np.ascontiguousarray(arr)
    return (arr >= threshold).astype(np.uint8)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name.

    Raises:
        InputError: the folder does not exist or holds no image file.
    """
    d = Path(folder)
    if not d.is_dir():
        raise InputError("no such folder", d)
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise InputError(f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)})", d)
    return files


def data_root(required: bool = True) -> Path | None:
    """Folder of the real public data sets: ``$MEDZOO_DATA``, else ``../shared/data`` beside the current folder
    or beside the medzoo source tree.

    Raises:
        InputError: ``required`` and no folder is found (the message says where it looked and how to set it).
    """
    env = os.environ.get("MEDZOO_DATA")
    cands = [Path(env)] if env else []
    cands += [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data",
              Path(__file__).resolve().parents[1] / ".." / "shared" / "data"]
    for c in cands:
        if c.is_dir():
            return c.resolve()
    if required:
        raise InputError("real data sets not found: set MEDZOO_DATA to the folder holding DRIVE/, STARE/, HRF/, "
                         "Drishti-GS1/ (fundus) and CT_brain_template_CQ500/ (midline's template check) "
                         f"(looked in {', '.join(str(c) for c in cands)})")
    return None


def read_csv_table(folder: str | Path, name: str, required: Sequence[str], *, what: str = "a site folder") -> list[dict[str, str]]:
    """Rows of ``folder/name`` (a CSV with a header; lines starting with ``#`` are comments), checked to exist,
    be non-empty and hold the ``required`` columns.

    Raises:
        InputError: no such folder, no such file, no rows, or missing columns (the message names the file).
    """
    import csv

    d = Path(folder)
    if not d.is_dir():
        raise InputError(f"no such folder (expected {what} holding {name})", d)
    f = d / name
    if not f.is_file():
        raise InputError(f"no {name}; {what} needs {name} with columns {','.join(required)}", d)
    with open(f, newline="") as fh:
        rows = list(csv.DictReader(row for row in fh if not row.startswith("#")))
    if not rows:
        raise InputError(f"{name} has no rows", f)
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise InputError(f"{name} lacks columns {missing} (needs {','.join(required)})", f)
    return rows
