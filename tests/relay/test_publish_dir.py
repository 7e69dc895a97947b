"""The relay benchmarks publish into --publish-dir (default docs/benchmarks/), not always into the repository's
docs/benchmarks/ whatever --out says; --out stays the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RELAY = ROOT / "tasks" / "relay"


@pytest.mark.parametrize("script", ["benchmark", "benchmark_fundus", "norm_eval_fundus"])
def test_publish_dir_option(script: str, tmp_path: Path, task_script) -> None:  # type: ignore[no-untyped-def]
    ap = task_script(f"tasks/relay/{script}.py").build_parser()
    assert ap.parse_args([]).publish_dir == ROOT / "docs" / "benchmarks"
    assert ap.parse_args(["--publish-dir", str(tmp_path)]).publish_dir == tmp_path


def test_opt_help_names_what_protects_the_publication(task_script) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(task_script("tasks/relay/benchmark_fundus.py").build_parser().format_help().split())
    assert "--name, which names the published files" in text and "--publish-dir" in text


def test_publish_writes_into_the_given_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task_script) -> None:  # type: ignore[no-untyped-def]
    common = task_script("tasks/relay/common.py")
    from medzoo.relay import report

    monkeypatch.setattr(report, "markdown", lambda results: "# table\n")
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks").glob("relay_trial*")}
    j, m = common.publish("relay_trial", {"x": 1}, tmp_path / "run", bench_dir=tmp_path / "pub")
    assert (j, m) == (tmp_path / "pub" / "relay_trial.json", tmp_path / "pub" / "relay_trial.md")
    assert j.is_file() and "# table" in m.read_text()
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks").glob("relay_trial*")} == before


def test_publication_names_the_code_and_libraries_that_trained_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   task_script) -> None:  # type: ignore[no-untyped-def]
    """A change of code or of a library version (an augmentation's random draws) changes a seeded run's numbers:
    the publication records both, so two publications that disagree can be traced."""
    import json
    from importlib import metadata

    common = task_script("tasks/relay/common.py")
    from medzoo.relay import report

    monkeypatch.setattr(report, "markdown", lambda results: "# table\n")
    j, m = common.publish("relay_trial", {"x": 1}, tmp_path / "run", bench_dir=tmp_path)
    sw = json.loads(j.read_text())["provenance"]["software"]
    assert sw["packages"]["albumentations"] == metadata.version("albumentations")
    assert sw["packages"]["timm"] == metadata.version("timm") and "medzoo" in sw["packages"]
    commit = sw["git_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40  # None outside a git checkout
    assert "- software: " in m.read_text() and "albumentations" in m.read_text()
    monkeypatch.setattr(common, "ROOT", tmp_path)  # not a git checkout: no commit, no error
    assert common.software()["git_commit"] is None
