"""tasks/midline/benchmark.py --n 4 (a smoke run) no longer crashes in auroc_ci (np.percentile of an empty list) when
no bootstrap resample holds both classes: the CI is [None, None] with a note, and the Markdown shows n/a."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench(task_script):  # type: ignore[no-untyped-def]
    return task_script("tasks/midline/benchmark.py")


def test_auroc_ci_of_one_class_is_none_with_a_note(bench) -> None:  # type: ignore[no-untyped-def]
    assert bench.auroc_ci([0.5, 1.0, 2.0, 0.1], [0.0, 1.0, 0.0, 2.0], n=50) == [None, None]
    lo, hi = bench.auroc_ci([0.5, 9.0, 1.0, 12.0, 0.2, 7.0], [0.0, 10.0, 1.0, 8.0, 0.0, 6.0], n=200)
    assert 0.0 <= lo <= hi <= 1.0
    per = {"mre_mm": [1.0, 2.0, 1.5, 1.2], "shift_abs_error_mm": [0.5, 0.2, 0.1, 0.3],
           "pred_shift_mm": [0.5, 1.0, 2.0, 0.1], "true_shift_mm": [0.0, 1.0, 0.0, 2.0],
           **{f"error_{k}_mm": [1.0] * 4 for k in ("falx_anterior", "septum_pellucidum", "falx_posterior")}}
    metrics = {"n": 4.0, "mre_mm": 1.4, "sdr_2mm": 1.0, "sdr_4mm": 1.0, "shift_abs_error_mm": 0.3,
               "shift5_sensitivity": float("nan"), "shift5_specificity": 1.0, "shift5_auroc": float("nan")}
    out = bench.summarise(SimpleNamespace(metrics=metrics, per_sample=per), True)
    assert out["ci95"]["shift5_auroc"] == [None, None] and "undefined" in out["ci95_note"]
    report = {"date_utc": "x", "command": "c", "machine": "m", "weights": "w", "weights_trained_on": ["synth-a"],
              "targets": {}, "results": {"synth-x (unseen SYNTHETIC site)": out, "inference time (CPU)": {}}}
    md = bench.to_markdown(report)
    assert "n/a [n/a, n/a]" in md and "undefined" in md
    assert np.isfinite(out["ci95"]["mre_mm"]).all()
