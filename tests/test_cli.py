"""The command line as a user runs it: list, synth -> predict, evaluate on a user folder, bad input.

Inputs are made on the fly (synthetic arrays, or a built-in synthetic site written by `medzoo synth`);
no research data is copied into the repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import medzoo
from medzoo.cli.main import main
from medzoo.weights import list_weights

SHIPPED = {w.name for w in list_weights()}


def _fundus_like(path: Path, seed: int = 0, size: tuple[int, int] = (96, 112)) -> Path:
    """A fundus-shaped RGB image (orange disc on black, a few dark lines); not a real photograph."""
    h, w = size
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 2 - 2, (40, 80, 180), -1)  # BGR
    rng = np.random.default_rng(seed)
    for _ in range(4):
        p1, p2 = rng.integers(10, min(h, w) - 10, 2), rng.integers(10, min(h, w) - 10, 2)
        cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), (20, 30, 90), 2)
    assert cv2.imwrite(str(path), img)
    return path


def test_version_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("medzoo ")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
    for w in list_weights():
        if w.synthetic:
            assert f"{w.name}" in out and "SYNTHETIC" in out


@pytest.mark.skipif("fundus-vessels" not in SHIPPED, reason="fundus-vessels weights not shipped")
def test_predict_fundus_writes_mask_and_overlay(tmp_path: Path) -> None:
    img = _fundus_like(tmp_path / "eye.png")
    assert main(["predict", "fundus-vessels", str(img), "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert any("mask" in n for n in written) and any("overlay" in n for n in written), written
    mask = cv2.imread(str(next((tmp_path / "out").glob("*mask*.png"))), cv2.IMREAD_UNCHANGED)
    assert mask.shape[:2] == (96, 112)


def test_predict_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(["predict", "fundus-vessels", str(bad), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "error" in err
    assert not any((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_evaluate_on_a_user_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "fundus-vessels" not in SHIPPED:
        pytest.skip("fundus-vessels weights not shipped")
    for sub in ("images", "masks"):
        (tmp_path / "site" / sub).mkdir(parents=True)
    for i in range(2):
        _fundus_like(tmp_path / "site" / "images" / f"{i:02d}.png", seed=i)
        m = np.zeros((96, 112), np.uint8)
        m[40:44, 10:100] = 255
        cv2.imwrite(str(tmp_path / "site" / "masks" / f"{i:02d}_manual.png"), m)
    out_json = tmp_path / "m.json"
    assert main(["evaluate", "fundus-vessels", "--data", str(tmp_path / "site"), "--split", "all", "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    assert 0.0 <= res["metrics"]["dice"] <= 1.0 and len(res["ids"]) == 2 and "held_out_from_train" not in res
    capsys.readouterr()
    # without split.csv the folder's 'test' split is every image, its 'train' split too: said, not passed off as held out
    assert main(["evaluate", "fundus-vessels", "--data", str(tmp_path / "site"), "--json", str(out_json)]) == 0
    run = capsys.readouterr()
    assert "[test, NOT held out from train], n=2" in run.out and "2 of the 2 samples of its 'test' split" in run.err
    assert json.loads(out_json.read_text())["held_out_from_train"] is False
    (tmp_path / "site" / "split.csv").write_text("id,split\n00,train\n01,test\n")
    assert main(["evaluate", "fundus-vessels", "--data", str(tmp_path / "site")]) == 0
    run = capsys.readouterr()
    assert "[test], n=1" in run.out and "NOT held out" not in run.out + run.err
    (tmp_path / "site" / "split.csv").unlink()
    # a mask without an image is refused, naming the file
    cv2.imwrite(str(tmp_path / "site" / "masks" / "99_manual.png"), m)
    assert main(["evaluate", "fundus-vessels", "--data", str(tmp_path / "site")]) == 2
    assert "99_manual" in capsys.readouterr().err


@pytest.mark.skipif("midline" not in SHIPPED, reason="midline weights not shipped")
def test_synth_then_predict_midline(tmp_path: Path) -> None:
    assert main(["synth", "midline", "--site", "synth-a", "--split", "test", "--n", "2", "--out", str(tmp_path / "site")]) == 0
    files = sorted(p for p in (tmp_path / "site").rglob("*.nii*"))
    assert len(files) == 2
    assert main(["predict", "midline", str(files[0]), "--out", str(tmp_path / "pred")]) == 0
    js = next((tmp_path / "pred").glob("*.json"))
    payload = json.loads(js.read_text())
    assert "shift" in json.dumps(payload).lower()


def test_simulate_help_says_what_each_budget_spends(capsys: pytest.CaptureFixture[str]) -> None:
    """`relay simulate --budget` listed tiny/small/full without saying what they spend (or that tiny's numbers mean
    nothing); the help now reads them from medzoo.relay.budget.BUDGETS."""
    from medzoo.relay.budget import BUDGETS

    with pytest.raises(SystemExit):
        main(["relay", "simulate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    small = BUDGETS["small"]
    assert f"small {small.epochs} / {small.max_train} / all" in text and "numbers mean nothing" in text
    assert "--task TASK task name" in text and "all: every site order" in text


def test_every_option_has_help() -> None:
    """Options such as `relay export --out`, `relay evaluate --data` and `evaluate --split` had no help text."""
    import argparse

    from medzoo.cli.main import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, f"{path} {name}")
            elif not a.help and a.dest != "help":
                missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")

    walk(build_parser(), "medzoo")
    assert missing == []


def test_synth_refuses_a_real_data_task(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["synth", "fundus-vessels", "--site", "drive", "--out", str(tmp_path)]) == 2
    assert "no synthetic sites" in capsys.readouterr().err


def test_console_script_help_is_fast() -> None:
    out = subprocess.run([sys.executable, "-m", "medzoo", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "relay" in out.stdout and "predict" in out.stdout
    assert medzoo.__version__


def test_outputs_and_options_are_checked_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by a day-one audit: two inputs named alike once overwrote each other's outputs (exit 0); an existing
    folder as `train --out` crashed with a traceback after training finished; an existing file was replaced without
    a word; options a task ignores were accepted, and a threshold of 1.5 wrote an all-zero mask."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = _fundus_like(tmp_path / "a" / "x.png"), _fundus_like(tmp_path / "b" / "x.png", seed=1)
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "dir").mkdir()

    def err_of(argv: list[str]) -> str:
        assert main(argv) == 2
        return capsys.readouterr().err

    out = str(tmp_path / "out")
    assert "would write outputs of the same name" in err_of(["predict", "fundus-vessels", str(a), str(b), "--out", out])
    assert "must be a folder" in err_of(["predict", "fundus-vessels", str(a), "--out", str(tmp_path / "afile")])
    assert "--slice-index does not apply to the fundus-vessels task" in err_of(
        ["predict", "fundus-vessels", str(a), "--out", out, "--slice-index", "3"])
    assert "--threshold does not apply to the midline task" in err_of(["predict", "midline", str(a), "--out", out, "--threshold", "0.3"])
    assert not (tmp_path / "out").exists()  # nothing was written by any refused call
    with pytest.raises(SystemExit):
        main(["predict", "fundus-vessels", str(a), "--out", out, "--threshold", "1.5"])
    assert "strictly between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "mediastinum", "--data", "synth-a", "--out", str(tmp_path / "m.safetensors"), "--epochs", "0"])
    assert "at least 1" in capsys.readouterr().err
    for cmd in (["relay", "train", str(tmp_path / "lap0.baton"), "--data", "synth-a", "--site", "a", "--out",
                 str(tmp_path / "lap1.baton")], ["finetune", "midline", "--data", "synth-a", "--out", out]):
        with pytest.raises(SystemExit):
            main([*cmd, "--lr", "-0.001"])
        assert "--lr: must be a positive number" in capsys.readouterr().err
    assert "is a folder" in err_of(["train", "mediastinum", "--data", "synth-a", "--out", str(tmp_path / "dir")])
    assert "already exists" in err_of(["finetune", "midline", "--data", "synth-a", "--out", str(tmp_path / "afile")])
    assert (tmp_path / "afile").read_text() == "keep me"
    assert "unknown task 'nosuch'" in err_of(["train", "nosuch", "--data", "x", "--out", str(tmp_path / "n.safetensors")])
    assert "is not a device" in err_of(["evaluate", "midline", "--data", "synth-a", "--device", "banana"])
    import torch

    if not torch.cuda.is_available():
        assert "no CUDA GPU" in err_of(["evaluate", "midline", "--data", "synth-a", "--device", "cuda"])


def test_an_unwritable_output_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    img = _fundus_like(tmp_path / "eye.png")
    assert main(["predict", "fundus-vessels", str(img), "--out", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err
    assert "medzoo: error:" in err and "afile" in err and "Traceback" not in err


def test_output_cut_short_by_a_closed_pipe_stops_quietly(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import os
    import sys

    from medzoo.cli.main import main

    # `medzoo relay strategies | head -1`: the reader has gone; writing raises BrokenPipeError (EPIPE)
    r, w = os.pipe()
    os.close(r)
    out = io.TextIOWrapper(os.fdopen(w, "wb"))  # block-buffered, as stdout into a pipe is: the listing fits the buffer
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert main(["relay", "strategies"]) == 1
    finally:
        monkeypatch.undo()
        try:
            out.close()
        except OSError:
            pass
    assert "Broken pipe" not in capsys.readouterr().err
