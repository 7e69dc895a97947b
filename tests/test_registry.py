"""The task registry and the CLI's start-up cost."""

from __future__ import annotations

import subprocess
import sys

import pytest

import medzoo
from medzoo import _registry


def test_builtin_tasks_are_listed() -> None:
    assert {"fundus-vessels", "fundus-disc", "mediastinum", "midline"} <= set(medzoo.list_tasks())
    assert medzoo.list_tasks("fundus-*") == ["fundus-disc", "fundus-vessels"]


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="fundus-vessels"):
        medzoo.get_task("no-such-task")


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        medzoo.register_task("midline")(object)


def test_user_task_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_USER", {})
    monkeypatch.setattr(_registry, "_CACHE", {})

    @medzoo.register_task("my-task")
    class MyTask:
        pass

    assert "my-task" in medzoo.list_tasks()
    assert isinstance(medzoo.get_task("my-task"), MyTask)
    assert medzoo.get_task("my-task") is medzoo.get_task("my-task")


def test_cli_help_does_not_import_torch() -> None:
    code = "import sys; from medzoo.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_cli_list_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "medzoo", "list"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "fundus-vessels" in out.stdout and "shipped weights:" in out.stdout
