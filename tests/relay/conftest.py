"""Relay tests use a tiny toy task (tests/relay/toy_task.py), never the real tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture()
def toy():  # type: ignore[no-untyped-def]
    from toy_task import toy_task

    return toy_task()
