"""The Relay Learning recipe (Bo et al., npj Digital Medicine 2023), as their code implements it:

1. distillation from the arriving model at every site after the first;
2. replay of image-label pairs drawn from a site-conditioned generator that travels in the baton and is
   trained (further) at every site on that site's data;
3. in the second half of a site's epochs, after each epoch, a sample-weighted merge of the arriving and
   current weights: ``p = (N_prev * p_old + n_k * p_new) / (N_prev + n_k)``, where ``N_prev`` is the number
   of training samples of all earlier sites (from the ledger) and ``n_k`` this site's.

Beyond the recipe, ``merge_weights="fisher"`` replaces the sample counts by per-parameter Fisher information
(Fisher merging, Matena & Raffel, NeurIPS 2022): ``p = (F_prev * p_old + n_k F_k * p_new) / (F_prev + n_k F_k)``,
where ``F_k`` is the empirical Fisher diagonal of the current model on this site's data and ``F_prev`` the
sample-weighted sum of the earlier sites' Fishers, carried in the baton (``fisher.*``); buffers such as
BatchNorm statistics keep the sample-weighted merge.

A site can switch replay off (``replay=False`` for that site): it then neither draws replayed samples nor
trains the generator on its own data, so its images never shape the generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medzoo.core import SiteContext, StepOutput
from medzoo.relay.strategies.base import SiteSettings, Strategy, StrategyError, float_state, iterate_batches
from medzoo.relay.strategies.ewc import fisher_diagonal
from medzoo.relay.strategies.lwf import Distillation
from medzoo.relay.strategies.replay import ConditionalVAE, fit_generator, nearest_neighbour_report


def weighted_merge(old: Mapping[str, Tensor], new: Mapping[str, Tensor], n_prev: int, n_k: int) -> dict[str, Tensor]:
    """``(n_prev * old + n_k * new) / (n_prev + n_k)`` for every floating-point entry of ``new``.

    Example:
        >>> weighted_merge({"w": torch.tensor([0.0])}, {"w": torch.tensor([4.0])}, n_prev=3, n_k=1)["w"]
        tensor([1.])
    """
    if n_prev + n_k <= 0:
        raise ValueError("sample counts must not both be zero")
    out = {}
    for k, v in new.items():
        if v.is_floating_point() and k in old:
            out[k] = (n_prev * old[k].to(v.device, v.dtype) + n_k * v) / (n_prev + n_k)
    return out


def fisher_merge(old: Mapping[str, Tensor], new: Mapping[str, Tensor], f_old: Mapping[str, Tensor],
                 f_new: Mapping[str, Tensor], n_prev: int, n_k: int) -> dict[str, Tensor]:
    """Per-entry Fisher-weighted merge ``(f_old * old + f_new * new) / (f_old + f_new)`` (Matena & Raffel 2022).

    ``f_old`` and ``f_new`` are already weighted by sample count (e.g. ``n_k * F_k``). Entries with no Fisher
    (buffers) or where both Fishers are zero take the sample-weighted merge of :func:`weighted_merge`.

    Example:
        >>> fisher_merge({"w": torch.tensor([0.0, 0.0])}, {"w": torch.tensor([4.0, 4.0])},
        ...              {"w": torch.tensor([3.0, 0.0])}, {"w": torch.tensor([1.0, 0.0])}, n_prev=1, n_k=1)["w"]
        tensor([1., 2.])
    """
    out = weighted_merge(old, new, n_prev, n_k)
    for k, v in new.items():
        if k not in out or k not in f_old or k not in f_new:
            continue
        fo = f_old[k].to(v.device, torch.float64)
        fn = f_new[k].to(v.device, torch.float64)
        den = fo + fn
        ok = den > 0
        w_new = torch.where(ok, fn / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
        fisher = old[k].to(v.device, torch.float64) * (1 - w_new) + v.to(torch.float64) * w_new
        out[k] = torch.where(ok, fisher, out[k].to(torch.float64)).to(v.dtype)
    return out


def native_crop(batch: Mapping[str, Any], size: int) -> dict[str, Any]:
    """Every spatial tensor of a dense-task batch (``image``, ``target``, ``fov``...: 4-D with the image's height
    and width) cut to one ``size`` x ``size`` window per sample at native resolution: the window, on a grid of
    stride ``size // 2``, with the largest ``fov`` fraction (ties: the first), or the centre without a ``fov``.

    Raises:
        StrategyError: the target is not spatial (a classification task), or the image is smaller than ``size``.

    Example:
        >>> b = {"image": torch.rand(2, 1, 64, 64), "target": torch.zeros(2, 1, 64, 64)}
        >>> native_crop(b, 32)["image"].shape
        torch.Size([2, 1, 32, 32])
    """
    img = batch["image"]
    h, w = img.shape[-2:]
    tgt = batch.get("target")
    if not torch.is_tensor(tgt) or tgt.dim() != 4 or tuple(tgt.shape[-2:]) != (h, w):
        raise StrategyError("gen_input=crop needs a dense task (a target with the image's height and width); "
                            "use gen_input=resize for this task")
    if h < size or w < size:
        raise StrategyError(f"gen_input=crop: samples are {h}x{w}, smaller than gen_size={size}")
    step = max(1, size // 2)
    ys, xs = list(range(0, h - size + 1, step)), list(range(0, w - size + 1, step))
    fov = batch.get("fov")
    if torch.is_tensor(fov) and fov.dim() == 4 and tuple(fov.shape[-2:]) == (h, w):
        cover = F.avg_pool2d(fov.float().mean(1, keepdim=True), size, stride=step)[:, 0]  # (B, len(ys), len(xs))
        best = cover.flatten(1).argmax(1)
        pos = [(ys[int(i) // len(xs)], xs[int(i) % len(xs)]) for i in best]
    else:
        pos = [((h - size) // 2, (w - size) // 2)] * img.shape[0]
    out: dict[str, Any] = dict(batch)
    for k, v in batch.items():
        if torch.is_tensor(v) and v.dim() == 4 and tuple(v.shape[-2:]) == (h, w):
            out[k] = torch.stack([v[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(pos)])
    return out


@dataclass(frozen=True)
class RelaySettings(SiteSettings):
    """The site settings of :class:`~medzoo.relay.strategies.base.SiteSettings`, and:

    Attributes:
        merge: when to apply the sample-weighted merge: after every epoch of the second half (the recipe),
            only after the last epoch, or never.
        distill_alpha: weight of distillation from the arriving model (0 switches it off).
        replay: whether the relay uses generative replay at all (each site may still switch it off).
        replay_weight: weight of the task loss on replayed batches.
        replay_batch: replayed samples per training step.
        gen_size: generator resolution (multiple of 16).
        gen_latent: generator latent size.
        gen_epochs: generator epochs at each site.
        gen_max_samples: at most this many of a site's training samples feed the generator.
        max_sites: number of site conditions the generator supports.
        gen_input: what the generator learns from each training sample: ``"resize"`` the whole sample scaled to
            ``gen_size`` (the task's ``replay_pack``), or ``"crop"`` a ``gen_size`` window at native resolution
            (the window of the sample with the most field of view, else the centre), for dense tasks whose
            structures a downscale would erase, such as thin retinal vessels.
        merge_weights: ``"samples"`` (the recipe: sample counts) or ``"fisher"`` (per-parameter Fisher
            information times sample count; the earlier sites' Fisher travels in the baton).
        fisher_batches: batches of the site's data for each Fisher estimate (``merge_weights="fisher"``).
    """

    merge: Literal["second-half", "end", "off"] = "second-half"
    distill_alpha: float = 1.0
    replay: bool = True
    replay_weight: float = 1.0
    replay_batch: int = 4
    gen_size: int = 64
    gen_latent: int = 32
    gen_epochs: int = 30
    gen_max_samples: int = 256
    max_sites: int = 8
    gen_input: Literal["resize", "crop"] = "resize"
    merge_weights: Literal["samples", "fisher"] = "samples"
    fisher_batches: int = 32


class Relay(Strategy):
    """Weighted merge + generative replay + distillation (see the module docstring)."""

    name: ClassVar[str] = "relay"
    Settings: ClassVar[type] = RelaySettings

    def __init__(self, settings: RelaySettings) -> None:
        super().__init__(settings)
        self.generator: ConditionalVAE | None = None
        self.learned_sites: list[int] = []
        self.site_replay: bool | None = None  # per-site override; None = settings.replay
        self._anchor: dict[str, Tensor] = {}
        self._distill: Distillation | None = None
        self._replay_now = False
        self._note: dict[str, Any] = {}
        self.fisher: dict[str, Tensor] = {}  # sum over earlier sites of n_k * F_k (merge_weights="fisher")
        self._site_fisher: dict[str, Tensor] | None = None

    # -- per-site switches ------------------------------------------------------------------------------
    def set_site_options(self, *, replay: bool | None = None) -> None:
        """Options a site may set for its own lap (``replay=False`` keeps its data out of the generator)."""
        self.site_replay = replay

    @property
    def replay_on(self) -> bool:
        return self.settings.replay and (self.site_replay is None or self.site_replay)

    # -- hooks ------------------------------------------------------------------------------------------
    def before_site(self, ctx: SiteContext) -> None:
        super().before_site(ctx)
        s = self.settings
        if ctx.site_index >= s.max_sites and self.replay_on:
            raise StrategyError(f"the replay generator supports {s.max_sites} sites; this is site {ctx.site_index + 1} "
                             "(start the relay with a larger max_sites, or switch replay off)")
        self._anchor = float_state(ctx.model) if ctx.n_seen > 0 else {}
        self._site_fisher = None
        if s.merge_weights == "fisher" and ctx.n_seen > 0 and not self.fisher:
            # a pretrained model without carried Fisher (``finetune``): estimate it at the arriving weights on this
            # site's data, the only data at hand (an approximation, as for EWC)
            self.fisher = {n: ctx.n_seen * f for n, f in self._fisher(ctx).items()}
        self._distill = None
        if ctx.n_seen > 0 and s.distill_alpha > 0:
            self._distill = Distillation(ctx.task, s.distill_alpha)
            self._distill.set_teacher(ctx.model)
        self._replay_now = self.replay_on and self.generator is not None and bool(self.learned_sites)
        if self.generator is not None:
            self.generator.to(ctx.device).eval()
        self._note = {"replay": "on" if self.replay_on else "off", "replayed_sites": list(self.learned_sites) if self._replay_now else [],
                      "merge": {"mode": s.merge, "n_prev": ctx.n_seen, "n_k": len(ctx.train_dataset),  # type: ignore[arg-type]
                                "after_epochs": []}}

    def replay_batch(self, ctx: SiteContext) -> dict[str, Any]:
        """A batch of replayed samples from the generator (conditions drawn over the learned sites)."""
        assert self.generator is not None
        idx = torch.randint(len(self.learned_sites), (self.settings.replay_batch,))
        cond = torch.tensor(self.learned_sites)[idx]
        packs = self.generator.sample(cond)
        batch = ctx.task.replay_unpack(packs)
        return {k: (v.to(ctx.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def extra_loss(self, ctx: SiteContext, batch: Mapping[str, Any], out: StepOutput) -> Tensor | None:
        total: Tensor | None = None
        if self._distill is not None:
            total = self._distill(batch, out)
        if self._replay_now:
            rb = self.replay_batch(ctx)
            rout = ctx.task.step(ctx.model, rb)
            term = self.settings.replay_weight * rout.loss
            if self._distill is not None:
                term = term + self._distill(rb, rout)
            total = term if total is None else total + term
        return total

    def _merges_after(self, epoch: int, epochs: int) -> bool:
        """Whether the schedule merges after (0-based) ``epoch`` of ``epochs``."""
        m = self.settings.merge
        return m != "off" and (epoch >= epochs // 2 if m == "second-half" else epoch == epochs - 1)

    def epoch_end(self, ctx: SiteContext, epoch: int) -> dict[str, Tensor] | None:
        s = self.settings
        if not self._anchor or s.merge == "off":
            return None
        if not self._merges_after(epoch, ctx.epochs):
            return None
        # every merge epoch up to this one (those before a resume ran in the killed process, on the same schedule)
        self._note["merge"]["after_epochs"] = [e + 1 for e in range(epoch + 1) if self._merges_after(e, ctx.epochs)]
        n_k = len(ctx.train_dataset)  # type: ignore[arg-type]
        if s.merge_weights == "fisher":
            self._site_fisher = self._fisher(ctx)
            merged = fisher_merge(self._anchor, ctx.model.state_dict(), self.fisher,
                                  {n: n_k * f for n, f in self._site_fisher.items()}, ctx.n_seen, n_k)
        else:
            merged = weighted_merge(self._anchor, ctx.model.state_dict(), ctx.n_seen, n_k)
        if s.norm_stats == "pool":  # the pooled statistics already weigh the sites; merging would pull them back
            merged = {k: v for k, v in merged.items() if not k.endswith((".running_mean", ".running_var"))}
        return merged

    def _fisher(self, ctx: SiteContext) -> dict[str, Tensor]:
        return {n: f.detach().cpu() for n, f in fisher_diagonal(
            ctx.task, ctx.model, ctx.train_dataset, device=ctx.device, max_batches=self.settings.fisher_batches,
            seed=ctx.site_index).items()}

    def after_site(self, ctx: SiteContext) -> None:
        s = self.settings
        self._distill = None
        if s.merge_weights == "fisher":
            # this site's Fisher at its trained (pre-merge) weights when a merge measured it, else at the final ones
            f_k = self._site_fisher if self._site_fisher is not None else self._fisher(ctx)
            n_k = len(ctx.train_dataset)  # type: ignore[arg-type]
            self.fisher = {n: self.fisher.get(n, torch.zeros_like(f)) + n_k * f for n, f in f_k.items()}
            self._site_fisher = None
        if not self.replay_on:
            self._note["generator"] = {"trained_on_this_site": False}
            return
        packs = torch.cat([ctx.task.replay_pack(native_crop(b, s.gen_size) if s.gen_input == "crop" else b, s.gen_size)
                           .detach().float().cpu()
                           for b in iterate_batches(ctx.train_dataset, 8, ctx.device,
                                                    max_batches=max(1, s.gen_max_samples // 8))])[: s.gen_max_samples]
        if self.generator is None:
            self.generator = ConditionalVAE(packs.shape[1], size=s.gen_size, latent=s.gen_latent, max_sites=s.max_sites)
        loss = fit_generator(self.generator, packs, ctx.site_index, learned_sites=list(self.learned_sites),
                             epochs=s.gen_epochs, seed=ctx.site_index, device=ctx.device)
        if ctx.site_index not in self.learned_sites:
            self.learned_sites.append(ctx.site_index)
        g = torch.Generator().manual_seed(1234)
        gen = self.generator.sample(torch.full((min(64, len(packs)),), ctx.site_index, dtype=torch.long), generator=g)
        self._note["generator"] = {"trained_on_this_site": True, "final_loss": loss, "size": s.gen_size,
                                   "memorisation": nearest_neighbour_report(gen, packs)}
        self.generator.cpu()

    def ledger_note(self) -> dict[str, Any]:
        return dict(self._note)

    # -- baton state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Tensor]:
        out = {f"fisher.{k}": v.detach().cpu() for k, v in self.fisher.items()} | self.optimizer_state()
        if self.generator is None:
            return out
        out.update({f"generator.{k}": v.detach().cpu() for k, v in self.generator.state_dict().items()})
        out["generator_config"] = self.generator.config()
        out["generator_sites"] = torch.tensor(self.learned_sites, dtype=torch.long)
        return out

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        state = self.load_optimizer_state(state)
        self.fisher = {k[len("fisher."):]: v for k, v in state.items() if k.startswith("fisher.")}
        state = {k: v for k, v in state.items() if not k.startswith("fisher.")}
        if not state:
            self.generator, self.learned_sites = None, []
            return
        if "generator_config" not in state:
            raise ValueError("relay strategy state lacks generator_config")
        self.generator = ConditionalVAE.from_config(state["generator_config"])
        gstate = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
        self.generator.load_state_dict(gstate, strict=True)
        self.generator.eval()
        self.learned_sites = [int(v) for v in state.get("generator_sites", torch.zeros(0)).tolist()]
