"""The recipes never replace weights or a model card silently: ``--out`` defaults to the repository's weights/
(not a ``weights`` folder of the current directory), an existing file or card at ``--out`` is refused before any
training unless ``--overwrite``, and the card records the command as it was run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {"tasks/fundus/train_vessels.py": "fundus-vessels", "tasks/fundus/train_disc.py": "fundus-disc",
           "tasks/mediastinum/train.py": "mediastinum"}


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("script", sorted(RECIPES))
def test_default_out_is_the_repository_weights_folder(script: str, tmp_path: Path) -> None:
    r = _run(script, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert str(ROOT / "weights") in text and "--overwrite" in text
    assert not (tmp_path / "weights").exists()


@pytest.mark.parametrize("script,which", [("tasks/fundus/train_vessels.py", "safetensors"),
                                          ("tasks/fundus/train_disc.py", "json"),
                                          ("tasks/mediastinum/train.py", "safetensors"),
                                          ("tasks/mediastinum/train.py", "json")])
def test_existing_output_is_refused_before_training(script: str, which: str, tmp_path: Path) -> None:
    name = RECIPES[script]
    out = tmp_path / "out"
    out.mkdir()
    existing = out / f"{name}.{which}"
    existing.write_bytes(b"keep me")
    r = _run(script, "--out", str(out), "--epochs", "0", cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--overwrite" in r.stderr and str(existing) in r.stderr
    assert existing.read_bytes() == b"keep me"
    assert "training on" not in r.stdout and "site 1/" not in r.stdout  # refused before any work


def test_remeasure_needs_overwrite(tmp_path: Path) -> None:
    r = _run("tasks/fundus/train_disc.py", "--remeasure", "--out", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "--overwrite" in r.stderr


def test_cards_record_the_command_as_run(task_script) -> None:  # type: ignore[no-untyped-def]
    for script in ("tasks/fundus/train_vessels.py", "tasks/fundus/train_disc.py"):
        src = (ROOT / script).read_text()
        assert '"recipe": command_line()' in src and "--out weights/\"" not in src
    mod = task_script("tasks/mediastinum/train.py")
    cmd = mod.command_line(["--epochs", "1", "--sites", "synth-a", "--out", "/tmp/x y"])
    assert cmd.startswith("python ") and cmd.endswith("--epochs 1 --sites synth-a --out '/tmp/x y'")
    src = (ROOT / "tasks/mediastinum/train.py").read_text()
    assert "recipe=command," in src and 'metrics_command=f"{command}' in src


def test_disc_validation_is_published_into_publish_dir(tmp_path: Path, task_script) -> None:  # type: ignore[no-untyped-def]
    """`train_disc.py --holdout` always wrote docs/benchmarks/fundus_disc_validation.*; --publish-dir sends it elsewhere."""
    from types import SimpleNamespace

    mod = task_script("tasks/fundus/train_disc.py")
    m = {"dice_disc": 0.9, "dice_cup": 0.8, "vcdr_abs_err": 0.07, "dice_mean": 0.85}
    history = [{"epoch": 5, "metrics": {"components@0.5": m, "hull@0.5": {**m, "vcdr_abs_err": 0.08}}}]
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks").glob("fundus_disc_validation*")}
    args = SimpleNamespace(seed=0, epochs=5, publish_dir=tmp_path)
    mod.write_validation(history, args, 40, ["a", "b"])
    assert {p.name for p in tmp_path.iterdir()} == {"fundus_disc_validation.json", "fundus_disc_validation.md"}
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks").glob("fundus_disc_validation*")} == before
