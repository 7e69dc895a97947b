"""Normalisation statistics at later sites (``norm_stats``: adapt, freeze, pool) and the helpers that measure and
mix them: shared by every strategy except naive."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from medzoo.relay.strategies import StrategyError, make_strategy
from medzoo.relay.strategies.base import mix_norm_stats, site_norm_stats
from medzoo.relay.trainer import TrainConfig, train_site


def test_norm_stats_freeze_keeps_running_statistics_at_later_sites(toy) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, seed=0)
    base = toy.build_model()
    train_site(toy, base, toy.build_dataset("a", "train"), cfg, progress=False)
    stats = {}
    for mode in ("adapt", "freeze"):
        net = copy.deepcopy(base)
        s = make_strategy("lwf", norm_stats=mode)
        train_site(toy, net, toy.build_dataset("c", "train"), cfg, hooks=[s], site_index=1, n_seen=24, progress=False)
        stats[mode] = net.bn.running_mean.clone()
        moved = float((net.bn.weight - base.bn.weight).detach().abs().max())
        assert moved > 0  # the affine weights learn in both modes
    assert torch.equal(stats["freeze"], base.bn.running_mean)
    assert not torch.allclose(stats["adapt"], base.bn.running_mean)
    first = copy.deepcopy(base)  # the first site of a relay always adapts its statistics
    train_site(toy, first, toy.build_dataset("c", "train"), cfg, hooks=[make_strategy("lwf", norm_stats="freeze")],
               site_index=0, n_seen=0, progress=False)
    assert not torch.allclose(first.bn.running_mean, base.bn.running_mean)
    with pytest.raises(StrategyError, match="norm_stats"):
        make_strategy("ewc", norm_stats="merge")


def test_norm_stats_other_than_adapt_refused_with_per_image_statistics(toy) -> None:  # type: ignore[no-untyped-def]
    from medzoo.norm import set_norm_eval

    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, seed=0)
    net = toy.build_model()
    set_norm_eval(net, "image")
    for mode in ("freeze", "pool"):
        with pytest.raises(StrategyError, match="never uses at inference"):
            train_site(toy, net, toy.build_dataset("c", "train"), cfg, hooks=[make_strategy("lwf", norm_stats=mode)],
                       site_index=1, n_seen=24, progress=False)
    train_site(toy, net, toy.build_dataset("c", "train"), cfg, hooks=[make_strategy("lwf")], site_index=1, n_seen=24,
               progress=False)  # adapt: fine


def test_mix_norm_stats_gives_the_statistics_of_the_union() -> None:
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(300, 2, generator=g), 3 + 2 * torch.randn(100, 2, generator=g)
    union = torch.cat([x1, x2])
    bn = nn.BatchNorm1d(2)
    mix_norm_stats(bn, {"": (x1.mean(0), x1.var(0, unbiased=False))}, {"": (x2.mean(0), x2.var(0, unbiased=False))},
                   w_old=300 / 400)
    assert torch.allclose(bn.running_mean, union.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, union.var(0, unbiased=False), atol=1e-4)
    with pytest.raises(ValueError, match="w_old"):
        mix_norm_stats(bn, {}, {}, w_old=1.5)


def test_site_norm_stats_measures_without_touching_the_model(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model().eval()
    net.bn.running_mean.fill_(0.25)
    before = copy.deepcopy(net.state_dict())
    ds = toy.build_dataset("c", "train")
    stats = site_norm_stats(toy, net, ds, torch.device("cpu"), max_samples=64, batch_size=8)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not net.training and not net.bn.training and net.bn.momentum == 0.1
    with torch.no_grad():  # the layer's input over the whole site (24 samples = 3 batches: mean of batch means)
        h = net.c1(torch.stack([ds[i]["image"] for i in range(len(ds))]))
    assert torch.allclose(stats["bn"][0], h.mean((0, 2, 3)), atol=1e-5)


def test_norm_stats_pool_trains_at_the_sample_weighted_mixture(toy) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.01, seed=0)
    base = toy.build_model()
    train_site(toy, base, toy.build_dataset("a", "train"), cfg, progress=False)
    ds = toy.build_dataset("c", "train")
    arriving = {"bn": (base.bn.running_mean.clone(), base.bn.running_var.clone())}
    site = site_norm_stats(toy, copy.deepcopy(base), ds, torch.device("cpu"), seed=0)
    expected = copy.deepcopy(base)
    mix_norm_stats(expected, arriving, site, w_old=72 / (72 + len(ds)))
    for s in (make_strategy("lwf", norm_stats="pool"), make_strategy("relay", norm_stats="pool", replay=False)):
        net = copy.deepcopy(base)  # one epoch: the statistics are measured once, at the arriving weights
        train_site(toy, net, ds, cfg, hooks=[s], site_index=1, n_seen=72, progress=False)
        assert torch.allclose(net.bn.running_mean, expected.bn.running_mean, atol=1e-6), s.name
        assert torch.allclose(net.bn.running_var, expected.bn.running_var, atol=1e-6), s.name
        assert not torch.allclose(net.bn.running_mean, base.bn.running_mean)
