"""The mediastinum benchmark labels a --relay-model file "relay (shipped weights)" only when it is the shipped
file (same sha256 as the shipped card), and records the command as run."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "tasks" / "mediastinum"


def _bench():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(TASK))
    try:
        spec = importlib.util.spec_from_file_location("mediastinum_benchmark", TASK / "benchmark.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        saved = sys.modules.pop("common", None)  # each tasks/<task>/ folder has its own common.py
        try:
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        finally:
            sys.modules.pop("common", None)
            if saved is not None:
                sys.modules["common"] = saved
    finally:
        sys.path.remove(str(TASK))
    return mod


def test_relay_label(tmp_path: Path) -> None:
    b = _bench()
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
