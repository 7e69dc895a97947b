"""Each strategy's regulariser on its own (no trainer), plus the factory and one behavioural check per hook."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from medzoo.core import SiteContext, StepOutput
from medzoo.relay.strategies import (Distillation, QuadraticPenalty, StrategyError, fisher_diagonal, list_strategies,
                                     make_strategy, mas_importance, strategy_defaults, weighted_merge)
from medzoo.relay.strategies.relay import fisher_merge, native_crop
from medzoo.relay.strategies.replay import ConditionalVAE, fit_generator, nearest_neighbour_report
from medzoo.relay.trainer import TrainConfig, train_site


def _ctx(toy, net, site_index=1, n_seen=24, epochs=4, site="b"):  # type: ignore[no-untyped-def]
    return SiteContext(task=toy, model=net, site_index=site_index, site_name=site, device=torch.device("cpu"),
                       train_dataset=toy.build_dataset(site, "train"), n_seen=n_seen, epochs=epochs)


def test_factory_lists_and_validates() -> None:
    assert list_strategies() == ["ewc", "lwf", "mas", "naive", "relay"]
    assert make_strategy("ewc", lam="5", mode="sum").settings.lam == 5.0
    assert make_strategy("relay", replay="off").settings.replay is False
    with pytest.raises(StrategyError, match="must be one of"):
        make_strategy("relay", merge="sometimes")
    with pytest.raises(StrategyError, match="unknown option"):
        make_strategy("lwf", lam=1)
    with pytest.raises(StrategyError, match="unknown strategy"):
        make_strategy("gem")
    assert strategy_defaults("relay")["merge"] == "second-half"


@pytest.mark.parametrize(("name", "opts", "message"), [
    ("lwf", {"alpha": "-1"}, "alpha=-1.0 must be >= 0"),
    ("lwf", {"site_lr_decay": "0"}, "must be > 0"),
    ("lwf", {"alpha": "nan"}, "must be a finite number"),
    ("ewc", {"max_batches": 0}, "must be >= 1"),
    ("ewc", {"gamma": "1.5"}, "must be >= 0 and <= 1"),
    ("relay", {"gen_epochs": "3.5"}, "must be an integer"),
    ("mas", {"lam": True}, "must be a number"),
    ("relay", {"gen_size": 24}, "must be >= 16 and a multiple of 16"),
    ("ewc", {"max_batches": 10**400}, "must be a finite number"),
])
def test_numeric_settings_out_of_range_are_refused(name, opts, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StrategyError, match=message):
        make_strategy(name, **opts)
    make_strategy(name, **{k: 16 if k == "gen_size" else 1 for k in opts if k != "gen_epochs"})  # in range: accepted


def test_quadratic_penalty_value_and_gradient() -> None:
    net = nn.Linear(3, 1)
    anchor = {n: p.detach().clone() for n, p in net.named_parameters()}
    imp = {n: torch.full_like(p, 2.0) for n, p in net.named_parameters()}
    pen = QuadraticPenalty(imp, anchor, lam=0.5)
    assert float(pen(net).detach()) == 0.0
    with torch.no_grad():
        net.weight += 1.0  # 3 weights moved by 1: 0.5 * 0.5 * (3 * 2 * 1)
    assert float(pen(net).detach()) == pytest.approx(1.5)
    pen(net).backward()
    assert torch.allclose(net.weight.grad, torch.full_like(net.weight, 0.5 * 2.0 * 1.0))  # lam * F * (p - p*)


def test_fisher_and_mas_importance_shapes_and_sign(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model()
    ds = toy.build_dataset("a", "train")
    for imp in (fisher_diagonal(toy, net, ds, device=torch.device("cpu"), max_batches=2),
                mas_importance(toy, net, ds, device=torch.device("cpu"), max_batches=2)):
        assert set(imp) == {n for n, _ in net.named_parameters()}
        assert all(v.shape == p.shape and (v >= 0).all() for (n, p), v in zip(net.named_parameters(), imp.values()))
        assert sum(float(v.sum()) for v in imp.values()) > 0
    assert all(p.grad is None for p in net.parameters())  # leaves no gradients behind


def test_distillation_regulariser_without_trainer(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model()
    batch = next(iter(torch.utils.data.DataLoader(toy.build_dataset("a", "train"), batch_size=4)))
    reg = Distillation(toy, alpha=2.0)
    out = toy.step(net, batch)
    zero = reg(batch, out)
    assert torch.is_tensor(zero) and float(zero) == 0.0  # a tensor, never a plain 0, when no teacher yet
    net.eval()  # the teacher runs in eval mode; compare like with like
    reg.set_teacher(net)
    assert float(reg(batch, toy.step(net, batch)).detach()) == pytest.approx(0.0, abs=1e-6)  # student == teacher
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.fc.weight.mul_(-3)
    assert float(reg(batch, toy.step(other, batch)).detach()) > 0
    assert all(not p.requires_grad for p in reg.teacher.parameters())  # type: ignore[union-attr]
    # Stand-in task: the regulariser only needs step() and distill_loss().
    fake = SimpleNamespace(step=lambda m, b: StepOutput(torch.zeros(()), m(b["x"])),
                           distill_loss=lambda s, t: ((s - t) ** 2).mean())
    lin = nn.Linear(2, 2)
    r2 = Distillation(fake, alpha=1.0)  # type: ignore[arg-type]
    r2.set_teacher(lin)
    with torch.no_grad():
        lin.bias += 1
    assert float(r2({"x": torch.zeros(3, 2)}, StepOutput(torch.zeros(()), lin(torch.zeros(3, 2)))).detach()) == pytest.approx(1.0)


def test_weighted_merge_formula() -> None:
    old = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}
    new = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(9)}
    m = weighted_merge(old, new, n_prev=30, n_k=10)
    assert torch.allclose(m["w"], (30 * old["w"] + 10 * new["w"]) / 40)
    assert "n" not in m  # integer buffers (num_batches_tracked) are left alone


def test_relay_merges_only_in_second_half(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model()
    s = make_strategy("relay", replay=False)
    ctx = _ctx(toy, net, epochs=4)
    s.before_site(ctx)
    arrived = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.fc.bias += 1.0
    assert s.epoch_end(ctx, 0) is None and s.epoch_end(ctx, 1) is None  # first half: no merge
    merged = s.epoch_end(ctx, 2)
    n_k = len(ctx.train_dataset)
    assert torch.allclose(merged["fc.bias"], (24 * arrived["fc.bias"] + n_k * net.fc.bias) / (24 + n_k))
    first = make_strategy("relay", replay=False)
    first.before_site(_ctx(toy, net, site_index=0, n_seen=0))
    assert first.epoch_end(_ctx(toy, net, site_index=0, n_seen=0), 3) is None  # nothing to merge at site 1


def test_fisher_merge_follows_the_more_informed_model_per_entry() -> None:
    old = {"w": torch.tensor([0.0, 0.0, 0.0]), "bn.running_mean": torch.tensor([0.0])}
    new = {"w": torch.tensor([4.0, 4.0, 4.0]), "bn.running_mean": torch.tensor([4.0])}
    f_old = {"w": torch.tensor([3.0, 0.0, 0.0])}
    f_new = {"w": torch.tensor([1.0, 5.0, 0.0])}
    m = fisher_merge(old, new, f_old, f_new, n_prev=3, n_k=1)
    # entry 0: 3:1 towards old; entry 1: only the new site informs it; entry 2: no information -> sample weights
    assert torch.allclose(m["w"], torch.tensor([1.0, 4.0, 1.0]))
    assert torch.allclose(m["bn.running_mean"], torch.tensor([1.0]))  # buffers: sample-weighted


def test_relay_fisher_merge_carries_the_accumulated_fisher(toy) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, seed=0)
    net = toy.build_model()
    s = make_strategy("relay", replay=False, merge="end", merge_weights="fisher", fisher_batches=2)
    train_site(toy, net, toy.build_dataset("a", "train"), cfg, hooks=[s], progress=False)
    state = s.state_dict()
    names = {n for n, _ in net.named_parameters()}
    assert {k.split(".", 1)[1] for k in state} == names and all(k.startswith("fisher.") for k in state)
    n_a = len(toy.build_dataset("a", "train"))
    f_a = fisher_diagonal(toy, net, toy.build_dataset("a", "train"), device=torch.device("cpu"), max_batches=2, seed=0)
    assert torch.allclose(state["fisher.fc.weight"], n_a * f_a["fc.weight"])
    # the next site merges with those weights: a strategy rebuilt from the baton state does exactly the same
    s2 = make_strategy("relay", replay=False, merge="end", merge_weights="fisher", fisher_batches=2)
    s2.load_state_dict(state)
    nets = [copy.deepcopy(net), copy.deepcopy(net)]
    for strat, n in zip((s, s2), nets):
        train_site(toy, n, toy.build_dataset("c", "train"), cfg, hooks=[strat], site_index=1, n_seen=n_a, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(nets[0].state_dict().values(), nets[1].state_dict().values()))
    assert s.ledger_note()["merge"]["after_epochs"] == [2]
    n_c = len(toy.build_dataset("c", "train"))
    assert torch.all(s.fisher["fc.weight"] >= state["fisher.fc.weight"])  # accumulated, never reset
    assert n_c > 0 and not torch.equal(s.fisher["fc.weight"], state["fisher.fc.weight"])


def test_ewc_keeps_weights_closer_than_naive(toy) -> None:  # type: ignore[no-untyped-def]
    base = toy.build_model()
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, seed=0)
    train_site(toy, base, toy.build_dataset("a", "train"), cfg, progress=False)
    drift = {}
    for name, opts in (("naive", {}), ("ewc", {"lam": 1e5})):
        net = copy.deepcopy(base)
        s = make_strategy(name, **opts)
        if name == "ewc":
            s.after_site(_ctx(toy, net, site_index=0, n_seen=0, site="a"))  # importances of site a
        train_site(toy, net, toy.build_dataset("c", "train"), cfg, hooks=[s], site_index=1, n_seen=24, progress=False)
        drift[name] = sum(float((p - q).detach().pow(2).sum()) for p, q in zip(net.parameters(), base.parameters()))
    assert drift["ewc"] < 0.5 * drift["naive"]


def test_ewc_state_round_trip(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model()
    s = make_strategy("ewc")
    s.after_site(_ctx(toy, net, site_index=0, n_seen=0, site="a"))
    state = s.state_dict()
    assert {k.split(".", 1)[0] for k in state} == {"importance", "anchor"}
    s2 = make_strategy("ewc")
    s2.load_state_dict(state)
    assert all(torch.equal(s2.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError):
        s2.load_state_dict({"bogus": torch.zeros(1)})


def test_generator_fits_and_memorisation_measure() -> None:
    torch.manual_seed(0)
    vae = ConditionalVAE(4, size=16, latent=4, max_sites=2, width=8)
    packs = torch.rand(12, 4, 16, 16)
    loss0 = fit_generator(vae, packs, 0, learned_sites=[], epochs=1, seed=0)
    loss1 = fit_generator(vae, packs, 0, learned_sites=[], epochs=15, seed=0)
    assert loss1 < loss0
    assert vae.sample(torch.tensor([0, 1])).shape == (2, 4, 16, 16)
    memorised = nearest_neighbour_report(packs[:5].clone(), packs)
    assert memorised["gen_to_train_min"] == 0.0 and memorised["ratio_median"] == 0.0
    fresh = nearest_neighbour_report(torch.rand(5, 4, 16, 16), packs)
    assert fresh["ratio_median"] > 0.5
    again = ConditionalVAE.from_config(vae.config())
    again.load_state_dict(vae.state_dict())


def test_relay_replay_switch_off_keeps_site_out_of_generator(toy) -> None:  # type: ignore[no-untyped-def]
    net = toy.build_model()
    s = make_strategy("relay", gen_epochs=1, gen_size=16)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0)
    train_site(toy, net, toy.build_dataset("a", "train"), cfg, hooks=[s], progress=False)
    gen_before = {k: v.clone() for k, v in s.state_dict().items()}
    assert s.learned_sites == [0] and s.ledger_note()["generator"]["trained_on_this_site"]
    s.set_site_options(replay=False)
    train_site(toy, net, toy.build_dataset("b", "train"), cfg, hooks=[s], site_index=1, n_seen=24, progress=False)
    assert s.ledger_note()["replay"] == "off" and not s.ledger_note()["generator"]["trained_on_this_site"]
    assert all(torch.equal(gen_before[k], v) for k, v in s.state_dict().items())
    assert s.learned_sites == [0]


def test_native_crop_keeps_resolution_and_prefers_the_field_of_view() -> None:
    g = torch.Generator().manual_seed(0)
    b = {"image": torch.rand(2, 1, 64, 64, generator=g), "target": torch.rand(2, 1, 64, 64, generator=g),
         "fov": torch.zeros(2, 1, 64, 64), "id": ["x", "y"]}
    b["fov"][0, :, 40:, 40:] = 1  # bottom right
    b["fov"][1, :, :16, :16] = 1  # top left
    out = native_crop(b, 32)
    assert out["image"].shape == (2, 1, 32, 32) and out["id"] == ["x", "y"]
    assert torch.equal(out["image"][0], b["image"][0, :, 32:, 32:]) and torch.equal(out["target"][0], b["target"][0, :, 32:, 32:])
    assert torch.equal(out["image"][1], b["image"][1, :, :32, :32])
    with pytest.raises(StrategyError, match="dense task"):
        native_crop({"image": b["image"], "target": torch.tensor([0, 1])}, 32)
    with pytest.raises(StrategyError, match="smaller"):
        native_crop(b, 128)


def test_lwf_alpha_scale_samples_weighs_sites_by_their_samples(toy) -> None:  # type: ignore[no-untyped-def]
    """``alpha_scale="samples"``: the distillation weight is ``alpha * N_prev / n_k`` (the earlier sites' samples over
    this site's), recorded in the ledger note; ``"fixed"`` keeps ``alpha``; no teacher at the first site."""
    net = toy.build_model()
    ds = toy.build_dataset("a", "train")
    n_k = len(ds)
    for scale, n_seen, want in [("samples", 2 * n_k, 3.0), ("samples", n_k // 2, 1.5 * (n_k // 2) / n_k), ("fixed", 2 * n_k, 1.5)]:
        lwf = make_strategy("lwf", alpha=1.5, alpha_scale=scale)
        lwf.before_site(SiteContext(task=toy, model=net, site_index=1, site_name="b", device=torch.device("cpu"),
                                    train_dataset=ds, n_seen=n_seen, epochs=1))
        assert lwf.reg is not None and lwf.reg.alpha == pytest.approx(want) and lwf.reg.teacher is not None
        assert lwf.ledger_note() == ({"distill_alpha": pytest.approx(want)} if scale == "samples" else {})
    first = make_strategy("lwf", alpha_scale="samples")
    first.before_site(SiteContext(task=toy, model=net, site_index=0, site_name="a", device=torch.device("cpu"),
                                  train_dataset=ds, n_seen=0, epochs=1))
    assert first.reg is not None and first.reg.teacher is None and first.ledger_note() == {}
    with pytest.raises(StrategyError, match="alpha_scale"):
        make_strategy("lwf", alpha_scale="per-site")


def test_site_warmup_ramps_the_learning_rate_at_later_sites_only(toy) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.01, seed=0)
    lrs: dict[int, list[float]] = {0: [], 1: []}
    for site_index, n_seen in ((0, 0), (1, 24)):
        s = make_strategy("lwf", site_warmup=0.5)
        train_site(toy, toy.build_model(), toy.build_dataset("a", "train"), cfg, hooks=[s], site_index=site_index,
                   n_seen=n_seen, progress=False, on_epoch_end=lambda e, st, i=site_index: lrs[i].append(st["lr"]))
    assert lrs[0][0] > 0.8 * cfg.lr and lrs[0] == sorted(lrs[0], reverse=True)  # first site: cosine from the top
    # later site: 12 steps, a linear ramp over the first 6 (the lr reported is the next step's: 4/6), then the cosine
    assert lrs[1][0] == pytest.approx(4 / 6 * cfg.lr) and lrs[1][1] == pytest.approx(cfg.lr)


@pytest.mark.parametrize("name", ["lwf", "ewc", "relay"])
def test_carry_optimizer_starts_the_next_site_from_the_carried_second_moments(toy, name) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(epochs=1, batch_size=8, seed=0)
    opts = {"gen_epochs": 1, "gen_size": 16} if name == "relay" else {}
    net = toy.build_model()
    first = make_strategy(name, carry_optimizer=True, **opts)
    train_site(toy, net, toy.build_dataset("a", "train"), cfg, hooks=[first], progress=False)
    state = first.state_dict()
    v = {k[len("optim.exp_avg_sq."):]: t for k, t in state.items() if k.startswith("optim.exp_avg_sq.")}
    assert set(v) == {n for n, p in net.named_parameters() if p.requires_grad} and float(state["optim.step"]) == 3
    assert all(torch.isfinite(t).all() and (t >= 0).all() for t in v.values()) and any(t.sum() > 0 for t in v.values())
    assert not any(k.startswith("optim.") for k in make_strategy(name, **opts).state_dict())  # off by default

    second = make_strategy(name, carry_optimizer=True, **opts)
    second.load_state_dict(state)  # what the next site reads from the baton
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    second.setup_optimizer(_ctx(toy, net), opt)
    for n, p in net.named_parameters():
        assert torch.equal(opt.state[p]["exp_avg_sq"], v[n]) and not opt.state[p]["exp_avg"].any()
    assert state.keys() - second.state_dict().keys() == set()  # carried on unchanged until the site trains
    # trained through the trainer, the carried state is used and carried on: AdamW's step count continues (3 -> 6)
    train_site(toy, net, toy.build_dataset("b", "train"), cfg, hooks=[second], site_index=1, n_seen=24, progress=False)
    assert float(second.state_dict()["optim.step"]) == 6
    off = make_strategy(name, **opts)
    off.load_state_dict({k: t for k, t in state.items() if not k.startswith("optim.")})
    opt2 = torch.optim.AdamW(net.parameters(), lr=1e-3)
    off.setup_optimizer(_ctx(toy, net), opt2)
    assert not opt2.state


def test_lwf_distill_inputs_perturbed_distils_on_the_tasks_perturbed_view(toy) -> None:  # type: ignore[no-untyped-def]
    """``distill_inputs="perturbed"``: the penalty is the distillation on ``task.perturb_batch(batch)`` (not on the
    batch), its extra pass leaves BatchNorm running statistics alone, it is reproducible under torch's seed, and
    ``"both"`` is the mean of the two terms; a task without ``perturb_batch`` is refused before training."""
    seeds: list[int] = []

    def perturb(batch, *, seed):  # type: ignore[no-untyped-def]
        seeds.append(seed)
        g = torch.Generator().manual_seed(seed)
        return {**batch, "image": (batch["image"] * 3 + torch.rand(batch["image"].shape, generator=g)).clamp(0, 5)}

    toy.perturb_batch = perturb
    net = toy.build_model()
    batch = next(iter(torch.utils.data.DataLoader(toy.build_dataset("b", "train"), batch_size=8)))
    arriving = copy.deepcopy(net)
    with torch.no_grad():
        net.fc.weight.mul_(-2)  # the student has moved away from the arriving model
    ctx = _ctx(toy, arriving)
    terms = {}
    for mode in ("batch", "perturbed", "both"):
        s = make_strategy("lwf", alpha=1.0, distill_inputs=mode)
        s.before_site(ctx)  # teacher = the arriving model
        ctx_student = _ctx(toy, net)
        net.train()
        out = toy.step(net, batch)
        stats = {k: v.clone() for k, v in net.bn.state_dict().items() if "running" in k}
        torch.manual_seed(0)
        terms[mode] = s.extra_loss(ctx_student, batch, out)
        assert all(torch.equal(stats[k], net.bn.state_dict()[k]) for k in stats)  # running statistics untouched
        assert terms[mode].requires_grad and float(terms[mode].detach()) > 0
        terms[mode] = terms[mode].detach()
    assert seeds[0] == seeds[1]  # the view's randomness follows torch's (epoch-reseeded) generator
    view = perturb(batch, seed=seeds[0])
    want = Distillation(toy, 1.0)
    want.set_teacher(arriving)
    assert float(terms["perturbed"]) == pytest.approx(float(want(view, toy.step(net, view)).detach()), rel=1e-5)
    assert float(terms["batch"]) != pytest.approx(float(terms["perturbed"]), rel=1e-3)
    assert float(terms["both"]) == pytest.approx(0.5 * (float(terms["batch"]) + float(terms["perturbed"])), rel=1e-5)
    bare = SimpleNamespace(spec=toy.spec, step=toy.step, distill_loss=toy.distill_loss,  # no perturb_batch
                           build_dataset=toy.build_dataset)
    with pytest.raises(StrategyError, match="no perturb_batch"):
        make_strategy("lwf", distill_inputs="perturbed").before_site(_ctx(bare, arriving))
    with pytest.raises(StrategyError, match="must be one of"):
        make_strategy("lwf", distill_inputs="augmented")


def test_lwf_distill_where_teacher_agrees_uses_the_tasks_masked_term(toy) -> None:  # type: ignore[no-untyped-def]
    """``distill_where="teacher_agrees"``: the penalty is the task's ``distill_loss_where_teacher_agrees`` of the
    student's and the arriving model's logits and the batch's target (also on the perturbed view with ``both``); a
    task without it is refused before training."""
    calls: list[tuple[Tensor, Tensor, Tensor]] = []

    def masked(student, teacher, target):  # type: ignore[no-untyped-def]
        calls.append((student, teacher, target))
        return 0.25 * toy.distill_loss(student, teacher)

    net = toy.build_model()
    arriving = copy.deepcopy(net)
    with torch.no_grad():
        net.fc.weight.mul_(-2)
    batch = next(iter(torch.utils.data.DataLoader(toy.build_dataset("b", "train"), batch_size=8)))
    task = SimpleNamespace(spec=toy.spec, step=toy.step, distill_loss=toy.distill_loss, build_dataset=toy.build_dataset,
                           distill_loss_where_teacher_agrees=masked)
    s = make_strategy("lwf", alpha=2.0, distill_where="teacher_agrees")
    s.before_site(_ctx(task, arriving))
    out = toy.step(net, batch)
    term = s.extra_loss(_ctx(task, net), batch, out)
    (student, teacher, target), = calls
    assert student is out.logits and torch.equal(target, out.target)
    assert torch.allclose(teacher, toy.step(arriving.eval(), batch).logits)
    plain = make_strategy("lwf", alpha=2.0)
    plain.before_site(_ctx(toy, arriving))
    assert float(term.detach()) == pytest.approx(0.25 * float(plain.extra_loss(_ctx(toy, net), batch, out).detach()), rel=1e-5)
    bare = SimpleNamespace(spec=toy.spec, step=toy.step, distill_loss=toy.distill_loss, build_dataset=toy.build_dataset)
    with pytest.raises(StrategyError, match="no distill_loss_where_teacher_agrees"):
        make_strategy("lwf", distill_where="teacher_agrees").before_site(_ctx(bare, arriving))
    with pytest.raises(StrategyError, match="must be one of"):
        make_strategy("lwf", distill_where="confident")


def test_parse_strategy_opts_reads_strategy_key_value_and_refuses_other_forms() -> None:
    from medzoo.relay.strategies import parse_strategy_opts

    assert parse_strategy_opts(["lwf.distill-inputs=both", "ewc.lam = 100", "lwf.alpha=2"]) == {
        "lwf": {"distill_inputs": "both", "alpha": "2"}, "ewc": {"lam": "100"}}
    for bad in ("lwf.alpha", "alpha=2", ".alpha=2", "lwf.=2"):
        with pytest.raises(ValueError, match="STRATEGY.KEY=VALUE"):
            parse_strategy_opts([bad])
