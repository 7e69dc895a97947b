"""The mediastinum benchmark labels a --relay-model file "relay (shipped weights)" only when it is the shipped
file (same sha256 as the shipped card), and records the command as run."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "tasks" / "mediastinum"


def test_relay_label(tmp_path: Path, task_script) -> None:  # type: ignore[no-untyped-def]
    b = task_script("tasks/mediastinum/benchmark.py")
    assert b.relay_label(None) == "relay (shipped weights)"
    copy = tmp_path / "copy.safetensors"
    shutil.copy2(ROOT / "weights" / "mediastinum.safetensors", copy)
    assert b.relay_label(copy) == "relay (shipped weights)"  # a byte-identical copy is the shipped file
    other = tmp_path / "mine.safetensors"
    other.write_bytes(b"another model")
    assert b.relay_label(other) == "relay (mine.safetensors)"


def test_command_is_recorded_as_run() -> None:
    src = (TASK / "benchmark.py").read_text()
    assert '"command": command_line()' in src and "--relay-model weights/mediastinum.safetensors\"" not in src
