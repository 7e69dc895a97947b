"""Shared fixtures. Tests that need the real data in ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="session")
def data_root() -> Path:
    from medzoo.io import data_root as find

    root = find(required=False)
    if root is None:
        pytest.skip("real data not found: ../shared/data is absent and MEDZOO_DATA is unset")
    return root


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    import torch

    torch.set_num_threads(2)


ROOT = Path(__file__).resolve().parents[1]


def load_task_script(relpath: str, name: str | None = None) -> ModuleType:
    """Import a script of ``tasks/`` (e.g. ``"tasks/midline/train.py"``) as a module. Its folder's own
    ``common.py`` is found while it loads and forgotten afterwards: each ``tasks/<task>/`` has one, and a stale one
    left in ``sys.modules`` would break the next script's import."""
    path = ROOT / relpath
    folder = str(path.parent)
    sys.path.insert(0, folder)
    saved = sys.modules.pop("common", None)
    try:
        spec = importlib.util.spec_from_file_location(name or f"{path.parent.name}_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    finally:
        sys.modules.pop("common", None)
        if saved is not None:
            sys.modules["common"] = saved
        sys.path.remove(folder)
    return mod


@pytest.fixture(scope="session")
def task_script():  # type: ignore[no-untyped-def]
    """:func:`load_task_script` as a fixture."""
    return load_task_script
