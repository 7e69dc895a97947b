"""medzoo.norm: per-image BatchNorm statistics at inference (norm_eval="image"), and where the mode travels."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from medzoo.errors import InputError
from medzoo.norm import norm_eval_of, set_norm_eval

TINY = {"encoder": "tu-mobilenetv3_small_050", "decoder_channels": [16, 16, 8, 8, 8]}


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    net.train()
    for _ in range(3):  # running statistics that differ from any one image's
        net(torch.rand(4, 1, 12, 12) * 3 + 1)
    return net.eval()


def test_image_mode_uses_each_images_own_statistics() -> None:
    net = _net()
    a, b = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12) * 5
    running = net(a)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert set_norm_eval(net, "image") == 1 and norm_eval_of(net) == "image"
    out = net(a)
    # what a BatchNorm with no running statistics computes on this image alone
    ref = copy.deepcopy(net)
    set_norm_eval(ref, "running")
    ref[1].running_mean = ref[1].running_var = None
    assert torch.allclose(out, ref(a), atol=1e-6) and not torch.allclose(out, running, atol=1e-3)
    assert torch.allclose(net(torch.cat([a, b]))[:1], out, atol=1e-6)  # independent of the batch
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing updated, same keys
    set_norm_eval(net, "running")
    assert norm_eval_of(net) == "running" and torch.equal(net(a), running)


def test_training_mode_is_unchanged() -> None:
    net, ref = _net(), _net()
    set_norm_eval(net, "image")
    net.train(), ref.train()
    x = torch.rand(4, 1, 12, 12)
    assert torch.equal(net(x), ref(x))
    assert torch.equal(net[1].running_mean, ref[1].running_mean)  # running statistics still accumulate


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(InputError, match="norm_eval must be one of"):
        set_norm_eval(_net(), "batch")


def test_fundus_network_records_the_mode_in_model_files_and_batons(tmp_path: Path) -> None:
    from medzoo.core import load_model, save_model
    from medzoo.relay import api
    from medzoo.tasks import fundus

    task = fundus.VesselTask()
    net = task.build_model(**TINY, norm_eval="image")
    assert task.architecture(net) == {**TINY, "norm_eval": "image"}
    assert task.architecture(task.build_model(**TINY)) == TINY  # files without the key keep their architecture
    back = load_model(save_model(task, net, tmp_path / "m.safetensors"))
    assert norm_eval_of(back.net) == "image"
    baton = api.start("fundus-vessels", tmp_path / "b.baton", init=str(tmp_path / "m.safetensors"), strategy="lwf")
    assert api.inspect(baton)["architecture"]["norm_eval"] == "image"
    plain = save_model(task, task.build_model(**TINY), tmp_path / "plain.safetensors")
    baton2 = api.start("fundus-vessels", tmp_path / "b2.baton", init=str(plain), strategy="naive", norm_eval="image")
    exported = api.export(baton2, tmp_path / "e.safetensors")
    assert norm_eval_of(load_model(exported).net) == "image"
    assert norm_eval_of(api.model(baton2).net) == "image"



def test_a_task_that_does_not_record_the_mode_is_refused(tmp_path: Path) -> None:
    from medzoo import get_task
    from medzoo.norm import apply_norm_eval
    from medzoo.relay import api

    task = get_task("mediastinum")
    net = task.build_model()
    with pytest.raises(InputError, match="does not support norm_eval='image'"):
        apply_norm_eval(task, net, "image")
    assert norm_eval_of(net) == "running"
    with pytest.raises(InputError, match="does not support"):
        api.start("mediastinum", tmp_path / "m.baton", strategy="naive", norm_eval="image")
    assert not (tmp_path / "m.baton").exists()
