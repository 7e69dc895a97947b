"""One contract, every task (timm's "tests come from the registry"): whatever the relay trainer and the CLI
call must work the same way for each registered task. Tiny batches; real-data tasks skip without the data."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Subset, default_collate

import medzoo
from medzoo.core import EvalResult, Task, TaskModel, load_model

TASKS = medzoo.list_tasks()


@pytest.fixture(params=TASKS)
def task(request: pytest.FixtureRequest) -> Task:
    t = medzoo.get_task(request.param)
    if not t.spec.synthetic:
        request.getfixturevalue("data_root")  # skips with a reason when ../shared/data is absent
    return t


def _batch(task: Task, n: int = 2) -> dict[str, Any]:
    ds = task.build_dataset(task.builtin_sites()[0], "train", augment=True)
    return default_collate([ds[i] for i in range(n)])


def test_protocol_and_spec(task: Task) -> None:
    assert isinstance(task, Task)
    assert task.spec.name in TASKS and task.spec.target_kind in ("mask", "label", "landmarks")
    assert task.spec.num_outputs >= 1 and len(task.builtin_sites()) >= 1
    if task.spec.classes:
        assert len(task.spec.classes) in (task.spec.num_outputs, task.spec.num_outputs + 1)


def test_architecture_rebuilds_the_same_network(task: Task) -> None:
    net = task.build_model()
    again = task.build_model(**task.architecture(net))
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in again.state_dict().items()}


def test_step_backward_distill_and_replay(task: Task) -> None:
    torch.manual_seed(0)
    net = task.build_model()
    batch = _batch(task)
    assert batch["image"].ndim == 4 and batch["image"].shape[1] == task.spec.in_chans
    out = task.step(net, batch)
    assert out.loss.ndim == 0 and math.isfinite(float(out.loss.detach()))
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    same = task.distill_loss(out.logits, out.logits.detach())
    other = task.distill_loss(out.logits, (out.logits + 3 * torch.randn_like(out.logits)).detach())
    assert float(same.detach()) >= -1e-6 and float(other.detach()) > float(same.detach())
    packed = task.replay_pack(batch, 32)
    assert packed.shape[0] == 2 and packed.shape[-2:] == (32, 32)
    assert float(packed.min()) >= 0.0 and float(packed.max()) <= 1.0
    replayed = task.replay_unpack(packed)
    assert math.isfinite(float(task.step(net, replayed).loss.detach()))


def test_save_load_roundtrip_and_evaluate(task: Task, tmp_path: Path) -> None:
    net = task.build_model().eval()
    model = task.wrap(net, {"note": "contract test"})
    assert isinstance(model, TaskModel)
    path = model.save(tmp_path / "m.safetensors")
    back = load_model(path, expect_task=task.spec.name)
    assert back.meta["note"] == "contract test"
    x = _batch(task)["image"]
    with torch.no_grad():
        torch.testing.assert_close(back.net(x), net(x), rtol=1e-4, atol=1e-4)
    ds = task.build_dataset(task.builtin_sites()[0], "test")
    res = task.evaluate(net, Subset(ds, [0, 1]))
    assert isinstance(res, EvalResult) and task.spec.primary_metric in res.metrics
    assert math.isfinite(res.metrics[task.spec.primary_metric])
