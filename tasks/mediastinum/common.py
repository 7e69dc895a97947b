"""Settings shared by the mediastinum recipe (train.py) and benchmark (benchmark.py). Everything is SYNTHETIC."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

TRAIN_SITES = ("synth-a", "synth-b", "synth-c")  # relay order; synth-c has few thymomas/teratomas
UNSEEN_SITE = "synth-x"  # acquisition never seen in training; test only
EPOCHS = 60  # per site (pooled: the same number of passes over the union, i.e. the same sample visits)
BATCH_SIZE = 32
LR = 2e-3
SEED = 0
# The shipped weights use LwF (distillation from the arriving model at every site after the first). The relay
# strategy (distillation + sample-weighted merge; its generative replay did not fit this shared CPU's time) was
# run first and measured worse on every test split here: averaging in the weights of a still-undertrained
# earlier model held training back (docs/mediastinum.md).
STRATEGY = "lwf"
RELAY_OPTS = {"replay": False}  # applied when --strategy relay
THREADS = 1  # one thread: on a shared, saturated CPU a second intra-op thread only waits


def machine() -> str:
    return f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}".replace("  ", " ")
