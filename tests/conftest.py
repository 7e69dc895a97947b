"""Shared fixtures. Tests that need the real data in ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

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
