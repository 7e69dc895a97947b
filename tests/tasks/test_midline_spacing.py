"""Midline predict on an array needs the slice's real pixel spacing: there is no default (a 0.5 mm default once gave
the wrong side of the shift on synth-x), a missing one is a clear InputError, and the true spacing from the case
gives the true shift's sign."""

from __future__ import annotations

import numpy as np
import pytest

from medzoo.errors import InputError
from medzoo.tasks import midline
from medzoo.tasks.midline.generator import generate, site_slice
from medzoo.weights import list_weights

pytestmark = pytest.mark.skipif("midline" not in {w.name for w in list_weights()}, reason="midline weights not shipped")


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return midline.pretrained()


def test_array_without_spacing_is_refused(model) -> None:  # type: ignore[no-untyped-def]
    s = generate(0, "synth-x")
    for call in (lambda: model.predict(s.hu), lambda: model.midline_shift_mm(s.hu),
                 lambda: model.predict(np.stack([s.hu, s.hu]), slice_index=0)):
        with pytest.raises(InputError, match="spacing_mm"):
            call()


def test_true_spacing_gives_the_true_side(model) -> None:  # type: ignore[no-untyped-def]
    s = site_slice("synth-x", "test", 0)                     # ~0.9 x 0.86 mm pixels, true shift -1.54 mm
    shift = model.midline_shift_mm(s.hu, spacing_mm=s.spacing_mm)
    assert np.sign(shift) == np.sign(s.shift_mm) and shift == pytest.approx(s.shift_mm, abs=0.5)
