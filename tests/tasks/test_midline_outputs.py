"""`medzoo predict midline a.v1.nii.gz a.v2.nii.gz --out o/` writes one output per input: predict_files names them
with the CLI's stem rule (strip a final .gz, then Path.stem), so the CLI's clash check and the file names agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medzoo.io import output_stem
from medzoo.tasks import midline
from medzoo.tasks.midline.generator import site_slice
from medzoo.tasks.midline.predict import predict_files
from medzoo.tasks.midline.reader import write_nifti_slice
from medzoo.weights import list_weights


@pytest.mark.parametrize("name,stem", [("case.v1.nii.gz", "case.v1"), ("case.v2.nii.gz", "case.v2"), ("head.nii", "head"),
                                       ("x.dcm", "x"), ("IM0001", "IM0001"), ("s.npy", "s"), ("a.b.c", "a.b")])
def test_output_stem_is_the_cli_rule(name: str, stem: str) -> None:
    # one function (medzoo.io.output_stem) names every task's outputs and drives the CLI's clash check
    assert output_stem(Path(name)) == stem


@pytest.mark.skipif("midline" not in {w.name for w in list_weights()}, reason="midline weights not shipped")
def test_two_versions_of_a_case_write_two_outputs(tmp_path: Path) -> None:
    s = site_slice("synth-a", "test", 0)
    a, b = tmp_path / "case.v1.nii.gz", tmp_path / "case.v2.nii.gz"
    write_nifti_slice(a, s.hu, s.spacing_mm)
    write_nifti_slice(b, np.fliplr(s.hu), s.spacing_mm)
    written = predict_files(midline.pretrained(), [a, b], tmp_path / "o")
    names = sorted(p.name for p in written)
    assert names == ["case.v1.midline.json", "case.v1.midline.png", "case.v2.midline.json", "case.v2.midline.png"]
