"""--bbox is in medzoo's reoriented index space, not the file's stored voxel order: the CLI help and
docs/mediastinum.md say so and say how to get a box in that space."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_bbox_help_names_the_reoriented_space(capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from medzoo.cli.main import main

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reoriented" in text and "NOT the file's stored voxel order" in text and "read_volume" in text


def test_docs_say_how_to_get_a_box_in_that_space() -> None:
    doc = " ".join((ROOT / "docs" / "mediastinum.md").read_text().split())
    assert "after medzoo reorients the file" in doc and "not the file's stored voxel order" in doc
    assert "medzoo.tasks.mediastinum.read_volume(" in doc
