"""The midline recipe (tasks/midline/train.py) never deletes what medzoo did not write, never replaces an existing
model file or card without --overwrite, refuses per-site values that do not match the sites, and its card records
the command that ran and the number of slices it trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recipe(task_script):  # type: ignore[no-untyped-def]
    return task_script("tasks/midline/train.py")


def test_foreign_work_folder_is_refused_and_kept(recipe, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "home"
    (work / "sub").mkdir(parents=True)
    (work / "thesis.tex").write_text("precious")
    (work / "sub" / "data.csv").write_text("1,2")
    rc = recipe.main(["--work", str(work), "--out", str(tmp_path / "w" / "m.safetensors")])
    assert rc == 2
    assert "marker" in capsys.readouterr().err
    assert (work / "thesis.tex").read_text() == "precious" and (work / "sub" / "data.csv").exists()


def test_own_work_folder_cleans_only_medzoo_files(recipe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "run"
    recipe.prepare_work(work, reuse=False)                     # new folder: created and marked
    assert (work / recipe.WORK_MARKER).exists()
    for name in ("start.baton", "synth-a.baton", "relay.safetensors", ".synth-b.baton.abc.part"):
        (work / name).write_text("x")
    (work / ".synth-b.baton.work").mkdir()
    (work / ".synth-b.baton.work" / "checkpoint.pt").write_text("x")
    (work / "notes.txt").write_text("mine")
    recipe.prepare_work(work, reuse=True)                      # --reuse keeps everything
    assert (work / "synth-a.baton").exists()
    recipe.prepare_work(work, reuse=False)
    assert sorted(p.name for p in work.iterdir()) == sorted([recipe.WORK_MARKER, "notes.txt"])
    empty = tmp_path / "empty"
    empty.mkdir()
    recipe.prepare_work(empty, reuse=False)                    # an empty folder is taken
    assert (empty / recipe.WORK_MARKER).exists()


@pytest.mark.parametrize("existing", ["m.safetensors", "midline.json"])
def test_existing_out_or_card_needs_overwrite(recipe, tmp_path: Path, existing: str, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "w" / "m.safetensors"
    out.parent.mkdir()
    (out.parent / existing).write_text("shipped")
    rc = recipe.main(["--work", str(tmp_path / "work"), "--out", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    assert (out.parent / existing).read_text() == "shipped"
    assert not (tmp_path / "work").exists()                    # refused before anything was made


def test_default_out_is_the_shipped_model_and_is_refused(recipe, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    if not (ROOT / "weights" / "midline.safetensors").exists():
        pytest.skip("midline weights not shipped")
    assert recipe.main(["--work", str(tmp_path / "work")]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("flag,values", [("--epochs", ["1", "1"]), ("--lr", ["1e-3", "1e-3", "1e-3"])])
def test_per_site_counts_must_match_the_sites(recipe, tmp_path: Path, flag: str, values: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    rc = recipe.main([flag, *values, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "w" / "m.safetensors")])
    assert rc == 2 and "one per site" in capsys.readouterr().err
    assert recipe.per_site([3], ("a", "b"), "--epochs") == [3, 3]


def test_card_records_the_command_and_true_sample_count(recipe, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "w" / "midline.safetensors"
    argv = ["--epochs", "1", "--max-samples", "2", "--eval-n", "1", "--sites", "synth-a", "synth-b",
            "--work", str(tmp_path / "work"), "--out", str(out)]
    assert recipe.main(argv) == 0
    card = json.loads((out.parent / "midline.json").read_text())
    assert card["recipe"].endswith(" ".join(argv[:-4]) + f" --work {tmp_path / 'work'} --out {out}")
    assert "--max-samples 2" in card["metrics_command"]
    assert "(4 slices, at most 2 per site)" in card["training_data"]
    assert card["sites"] == ["synth-a", "synth-b"] and card["training_cost"]["epochs"] == [1, 1]
    assert recipe.main(argv) == 2                              # a rerun does not replace it silently
    assert recipe.main([*argv, "--overwrite"]) == 0
