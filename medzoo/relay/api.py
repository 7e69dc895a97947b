"""Deployment API: one function per step of a real relay, plus ``finetune`` for a single new site.

A relay across three hospitals, in Python::

    from medzoo.relay import api
    api.start("fundus-vessels", "relay.baton", init="fundus-vessels", strategy="lwf")
    api.train("relay.baton", "/data/site1", site="site1", out="site1.baton", epochs=20)  # at site 1
    api.train("site1.baton", "/data/site2", site="site2", out="site2.baton", epochs=20)   # at site 2
    api.evaluate("site2.baton", "/data/site1", site="site1")                              # evaluation lap
    api.export("site2.baton", "model.safetensors")                                        # medzoo.core.load_model

Every function verifies the baton first (content hash, ledger chain, optional HMAC key) and refuses with a
:class:`~medzoo.errors.BatonError` before writing anything.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from medzoo.core import EvalResult, Task, TaskModel, dataset_augment, load_state_dict_strict
from medzoo.errors import BatonError, InputError
from medzoo.relay import DEFAULT_STRATEGY
from medzoo.relay.baton import Baton, now
from medzoo.relay.finetune import finetune, finetuned_meta  # noqa: F401  (api.finetune: one new site, no baton)
from medzoo.relay.strategies import Strategy, StrategyError, make_strategy, stored_strategy
from medzoo.relay.trainer import TrainConfig, _dist, init_distributed, train_site
from medzoo.relay.workdir import WORK_MARKER  # noqa: F401  (where a lap checkpoints)
from medzoo.relay.workdir import clean_work_dir as _clean_work_dir
from medzoo.relay.workdir import prepare_work_dir as _prepare_work_dir
from medzoo.splits import not_held_out, sample_ids, shared_samples, shared_with_train


def _refuse_existing(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise BatonError(f"{out}: already exists; choose another --out or pass overwrite=True (--overwrite)")


def _same_file(a: str | Path, b: str | Path) -> bool:
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _refuse_signed_without_key(b: Baton, key_file: str | Path | None, step: str) -> None:
    """A signed baton must stay signed: without the key the next baton would go out unsigned."""
    _require_key(b, key_file, f"to verify it and sign the next one ({step} refused: it would write an unsigned baton "
                              "that the next site's `verify --key-file` rejects)")


def _refuse_unchecked_signature(b: Baton, key_file: str | Path | None, what: str) -> None:
    """A signed baton's model is put to use only once its signature is checked: anyone can rewrite a baton and
    recompute its content hash; only the signature shows the consortium wrote it."""
    _require_key(b, key_file, f"to check the signature before {what} (the content hash alone does not show who "
                              "wrote the baton)")


def _require_key(b: Baton, key_file: str | Path | None, why: str) -> None:
    if b.signed and key_file is None:
        raise BatonError(f"{b.path}: the baton is signed; give --key-file (key_file=) with the consortium key {why}")


def _check_max_samples(max_samples: int | None) -> None:
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise InputError(f"max_samples must be a whole number >= 1 (or None for all), got {max_samples!r}")


def _data_identity(data: str | Path, split: str, ds_full: Dataset[Any], max_samples: int | None) -> dict[str, Any]:
    """What a checkpoint must match besides weights and settings: which data (source, split, size, sample ids)."""
    p = Path(str(data))
    source = str(p.resolve()) if p.exists() else str(data)
    ident: dict[str, Any] = {"data": source, "split": split, "n_total": len(ds_full),  # type: ignore[arg-type]
                             "max_samples": max_samples}
    ids = sample_ids(ds_full)
    if ids is not None:
        import hashlib

        ident["ids_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return ident


def _site_dataset(task: Task, data: str | Path, split: str, *, augment: bool = False) -> Dataset[Any]:
    """The site's data set for the baton's task; a refusal also says which task the baton is for (a site handed
    the baton of another task otherwise sees only a folder-layout complaint)."""
    try:
        return task.build_dataset(data, split, augment=augment)
    except InputError as e:
        if split != "all":
            try:
                task.build_dataset(data, "all")
            except InputError:
                pass
            else:  # a site of this task that lacks this split: the message says so, the hint would mislead
                raise
        raise InputError(f"{e} (this baton is for task {task.spec.name!r}: is {str(data)!r} a "
                         f"{task.spec.name} site?)") from e


def _build(b: Baton) -> tuple[Task, torch.nn.Module, Strategy]:
    from medzoo import get_task

    task = get_task(b.task)
    net = task.build_model(**b.architecture)
    load_state_dict_strict(net, b.model_state, source=str(b.path or "baton"))
    try:
        strategy = stored_strategy(b.strategy, b.strategy_settings)
    except StrategyError as e:
        raise BatonError(f"{b.path}: the strategy this baton records cannot be rebuilt here ({e}); was it written "
                         "by a newer medzoo?") from e
    try:
        strategy.load_state_dict(b.strategy_state)
    except (ValueError, RuntimeError, KeyError) as e:
        raise BatonError(f"{b.path}: strategy state does not fit strategy {b.strategy!r} ({e})") from e
    return task, net, strategy


def subset(ds: Dataset[Any], max_samples: int | None, seed: int = 0) -> Dataset[Any]:
    """The first ``max_samples`` of a fixed random permutation of ``ds`` (all of it when None)."""
    n = len(ds)  # type: ignore[arg-type]
    if max_samples is None or max_samples >= n:
        return ds
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_samples].tolist()
    return Subset(ds, sorted(idx))


def start(task_name: str, out: str | Path, *, init: str | Path | None = None, strategy: str = DEFAULT_STRATEGY,
          key_file: str | Path | None = None, overwrite: bool = False, arch: dict[str, Any] | None = None,
          seed: int = 0, norm_eval: str | None = None, **strategy_opts: Any) -> Path:
    """Create the first baton of a relay.

    Args:
        task_name: registry name, e.g. ``"fundus-vessels"``.
        out: baton file to write.
        init: shipped weights name or model file to start from (default: random init).
        strategy: see :func:`medzoo.relay.strategies.list_strategies`; fixed for the whole relay (default
            :data:`medzoo.relay.DEFAULT_STRATEGY`, LwF).
        key_file: sign the baton with this shared key (HMAC-SHA256).
        overwrite: replace an existing ``out``.
        arch: builder arguments for a fresh network (ignored with ``init``).
        seed: seeds the random initialisation (the same seed gives the same starting weights).
        norm_eval: ``"running"`` or ``"image"``: where the network's BatchNorm layers take their statistics from at
            inference (:mod:`medzoo.norm`), carried in the baton's architecture; None keeps the network's.
        **strategy_opts: strategy settings (checked; e.g. ``lam=100`` for EWC, ``replay=False`` for relay).

    Returns:
        The baton path.

    Example:
        >>> start("midline", "relay.baton", strategy="lwf")  # doctest: +SKIP
    """
    from medzoo import get_task

    out = Path(out)
    _refuse_existing(out, overwrite)
    task = get_task(task_name)
    strat = make_strategy(strategy, **strategy_opts)
    torch.manual_seed(seed)
    net = task.build_model(weights=init) if init is not None else task.build_model(**(arch or {}))
    if norm_eval is not None:
        from medzoo.norm import apply_norm_eval

        apply_norm_eval(task, net, norm_eval)
    b = Baton.new(task_name, task.architecture(net), strat.name, strat.settings_json(), net.state_dict(),
                  init=str(init) if init is not None else None)
    return b.write(out, key_file=key_file)


def train(baton: str | Path, data: str | Path, site: str, out: str | Path, *, epochs: int = 10, batch_size: int = 8,
          lr: float = 1e-3, seed: int = 0, device: str = "cpu", resume: bool = True, key_file: str | Path | None = None,
          replay: bool | None = None, work_dir: str | Path | None = None, max_samples: int | None = None,
          eval_split: str | None = "test", amp: bool = True, num_workers: int = 0, progress: bool = True,
          overwrite: bool = False, expect_task: str | None = None, split: str = "train", augment: bool | str = True,
          _stop_after_epochs: int | None = None) -> Path | None:
    """Train the baton's model at one site on local data only and write the next baton.

    Args:
        baton: the arriving baton. data: built-in site name or a folder in the task's layout. site: site name
            recorded in the ledger. out: the baton to write (the input is never modified).
        epochs, batch_size, lr, seed, amp, num_workers: optimisation (see :class:`~medzoo.relay.trainer.TrainConfig`).
        device: ``"cpu"`` / ``"cuda"``; under ``torchrun`` each process uses ``cuda:LOCAL_RANK`` through DDP.
        resume: continue from the per-epoch checkpoint in ``work_dir`` if a previous run was killed (only a
            checkpoint of the same run: same arriving weights, settings, site and data, ``max_samples`` included).
        key_file: verify the arriving baton and sign the new one with this shared key; required when the arriving
            baton is signed.
        replay: this site's replay switch for strategies with a generator (False: no replay, and the site's
            images never train the generator). True is refused on a relay started with ``replay=False``.
        work_dir: checkpoints folder (default ``.<out>.work`` beside ``out``). It must be new, empty, or one medzoo
            made (it holds a ``.medzoo-relay-work`` marker and checkpoint files only); anything else is refused
            before training. After success medzoo removes only its own files there, then the folder if empty.
        max_samples: use at most this many training samples (fixed random subset).
        eval_split: after training, evaluate on this split of ``data`` for the ledger (None: skip; not measured, and
            the entry says why, where it shares samples with ``split``: no held-out result).
        overwrite: replace an existing ``out``. expect_task: refuse a baton for another task.
        split: the split of ``data`` to train on (``"train"``; ``"fit"`` where a task holds a validation split out).
        augment: the task's training augmentation (``True``), none (``False``), or a level name from the task's
            ``augment_levels`` (e.g. fundus' ``"strong"``); recorded in the ledger.

    Returns:
        The new baton's path (None only when stopped early by ``_stop_after_epochs``, a test seam).

    Raises:
        BatonError: the arriving baton is refused (also: signed but no ``key_file``), ``out`` exists or is the
            arriving baton, or ``work_dir`` holds files medzoo did not write.
        InputError: the data folder is unusable, epochs/batch_size/max_samples < 1, num_workers < 0, or lr is not a
            finite number > 0.
    """
    out = Path(out)
    # the optimisation settings are checked (TrainConfig refuses a bad value) before the baton is even read
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, amp=amp, num_workers=num_workers)
    _check_max_samples(max_samples)
    b = Baton.read(baton, key_file=key_file, expect_task=expect_task)
    _refuse_signed_without_key(b, key_file, "training")
    if _same_file(out, baton):
        raise BatonError(f"{out}: --out is the arriving baton, which is never modified; choose another --out")
    if key_file is not None and _same_file(out, key_file):
        raise BatonError(f"{out}: --out is the key file; choose another --out")
    _refuse_existing(out, overwrite)
    if replay and b.strategy_settings.get("replay") is False:
        raise BatonError(f"{b.path}: this relay was started with replay=false (no replay generator travels with it); "
                         "a site cannot switch replay on: drop --replay")
    work = Path(work_dir) if work_dir is not None else out.parent / f".{out.name}.work"
    for other, what in ((out, "--out"), (baton, "the arriving baton"), (key_file, "the key file")):
        if other is not None and _same_file(work, other):
            raise BatonError(f"{work}: --work-dir (work_dir=) is {what}; give a folder of its own")
    _prepare_work_dir(work, default=work_dir is None, create=False)  # refuse a folder that is not medzoo's, first
    device, rank = init_distributed(device)
    task, net, strategy = _build(b)
    if replay is not None:
        if hasattr(strategy, "set_site_options"):
            strategy.set_site_options(replay=replay)
        elif replay:
            raise BatonError(f"strategy {b.strategy!r} has no replay to switch on")
    aug = dataset_augment(task, augment)
    aug_name = "standard" if aug is True else aug or "none"
    ds_full = _site_dataset(task, data, split, augment=aug)
    ds = subset(ds_full, max_samples, seed)
    if rank == 0:
        _prepare_work_dir(work, default=work_dir is None, create=True)
        if not resume:
            _clean_work_dir(work, keep_marker=True)  # the earlier run's checkpoints only
    started = now()
    stats = train_site(task, net, ds, cfg, hooks=[strategy], site_name=site, site_index=len(b.training_entries),
                       n_seen=b.n_seen, device=device, progress=progress, checkpoint_dir=work,
                       stop_after_epochs=_stop_after_epochs,
                       run_identity={**_data_identity(data, split, ds_full, max_samples),
                                     **({} if aug_name == "standard" else {"augment": aug_name})})
    if not stats["completed"]:
        return None
    if rank != 0:
        return None
    metrics: dict[str, Any] = {}
    if eval_split:
        try:
            eval_ds = task.build_dataset(data, eval_split)
            shared = shared_samples(ds_full, eval_ds)
            if shared:  # the site just trained on these: a result would be a training-data one, labelled as test
                metrics = {site: {"skipped": not_held_out(eval_split, split, shared, len(eval_ds)) +  # type: ignore[arg-type]
                                  ", and this site just trained on them: not measured, as the result would not be a "
                                  "held-out one; give the folder a held-out test split (the task's folder layout)"}}
            else:
                metrics = {site: task.evaluate(net, eval_ds, device=device).metrics}  # type: ignore[arg-type]
        except InputError as e:
            metrics = {site: {"skipped": f"no {eval_split} split ({e})"}}
    nb = b.with_state({k: v for k, v in net.state_dict().items()}, strategy.state_dict())
    nb.append({"kind": "train", "site": site, "order": len(b.training_entries) + 1, "n_samples": len(ds),  # type: ignore[arg-type]
               "epochs": epochs, "metrics": metrics, "metrics_split": eval_split, "strategy": b.strategy,
               "strategy_settings": b.strategy_settings, "site_options": {"replay": replay},
               "train_config": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "device": device,
                                "split": split, "max_samples": max_samples, "augment": aug_name, "amp": bool(amp and torch.device(device).type == "cuda"),
                                "lr_scale": stats.get("lr_scale", 1.0), "warmup_steps": int(stats.get("warmup_steps", 0)),
                                "resumed_from_epoch": int(stats["resumed_from_epoch"]),
                                "processes": _dist()[2]},  # under torchrun, batch_size is per process
               "train_stats": {"loss": stats["loss"], "steps": int(stats["steps"]), "wall_s": round(stats["wall_s"], 2)},
               "note": strategy.ledger_note(), "started": started, "finished": now(),
               "synthetic": task.spec.synthetic})
    path = nb.write(out, key_file=key_file)
    _clean_work_dir(work)
    return path


def inspect(baton: str | Path, *, key_file: str | Path | None = None) -> dict[str, Any]:
    """The baton's verified content as a dict: task, strategy and settings, sites, sample count, ledger, tensors.

    Example:
        >>> inspect("site2.baton")["sites"]  # doctest: +SKIP
        ['drive', 'stare']
    """
    b = Baton.read(baton, key_file=key_file)
    return {"path": str(baton), "format": b.format, "task": b.task, "architecture": b.architecture,
            "strategy": b.strategy, "strategy_settings": b.strategy_settings, "sites": b.sites, "n_seen": b.n_seen,
            "signed": b.signed, "signature_checked": b.signature_checked, "content_sha256": b.content_sha256(),
            "weights_sha256": b.weights_sha256,
            "tensors": {"model": len(b.model_state), "strategy": sorted(b.strategy_state)},
            "ledger": b.ledger}


def evaluate(baton: str | Path, data: str | Path, site: str, *, out: str | Path | None = None, split: str = "test",
             key_file: str | Path | None = None, device: str = "cpu", overwrite: bool = False) -> EvalResult:
    """An evaluation lap: measure the baton's model on a site's test data and append the result to the ledger.

    Args:
        out: where to write the baton with the new entry (default, or ``out`` naming ``baton`` itself: replace
            ``baton`` atomically). Another existing file is refused unless ``overwrite``.
        key_file: the consortium key; required when the baton is signed (it verifies it and signs the new one).
        overwrite: replace an existing ``out`` other than ``baton``.

    Returns:
        The :class:`~medzoo.core.EvalResult` (per-sample values included).

    Raises:
        BatonError: the baton is refused (also: signed but no ``key_file``), or ``out`` exists.
    """
    b = Baton.read(baton, key_file=key_file)
    _refuse_signed_without_key(b, key_file, "evaluation")
    if out is not None and not _same_file(out, baton):
        if key_file is not None and _same_file(out, key_file):
            raise BatonError(f"{out}: --out is the key file; choose another --out")
        _refuse_existing(Path(out), overwrite)
    task, net, _ = _build(b)
    ds = _site_dataset(task, data, split)
    t0 = time.perf_counter()
    caveat: dict[str, Any] = {}
    if split not in ("train", "all"):  # asked for held-out data: say so when the folder holds none apart
        shared = shared_with_train(task, data, ds)
        if shared:
            caveat = {"held_out": False, "caveat": not_held_out(split, "train", shared, len(ds)) +  # type: ignore[arg-type]
                      ": if this site trained on them, this is not a held-out result"}
            warnings.warn(f"{data}: {caveat['caveat']}", stacklevel=2)
    res = task.evaluate(net, ds, device=device)
    nb = b.with_state(b.model_state, b.strategy_state)
    nb.append({"kind": "evaluate", "site": site, "split": split, "n_samples": len(ds),  # type: ignore[arg-type]
               "after_sites": b.sites, "metrics": {site: res.metrics}, **caveat,
               "wall_s": round(time.perf_counter() - t0, 2), "finished": now(), "synthetic": task.spec.synthetic})
    nb.write(out if out is not None else baton, key_file=key_file)
    return res


def verify(baton: str | Path, *, key_file: str | Path | None = None) -> dict[str, Any]:
    """Check a baton (content hash, ledger chain, weights hash, and the HMAC signature when ``key_file`` is given).

    Returns:
        ``{"ok": True, "signed", "signature_checked", "entries", "sites", "content_sha256"}``.

    Raises:
        BatonError: any check fails (the message says which).
    """
    b = Baton.read(baton, key_file=key_file)
    return {"ok": True, "task": b.task, "signed": b.signed, "signature_checked": b.signature_checked,
            "entries": len(b.ledger), "sites": b.sites, "content_sha256": b.content_sha256()}


def _model(b: Baton) -> TaskModel:
    task, net, _ = _build(b)
    meta = {"relay": {"sites": b.sites, "n_samples": b.n_seen, "strategy": b.strategy, "baton_sha256": b.content_sha256(),
                      "metrics": [{"site": e.get("site"), "kind": e.get("kind"), "metrics": e.get("metrics")}
                                  for e in b.ledger if e.get("metrics")]},
            "sites": b.sites, "n_train": b.n_seen, "synthetic": task.spec.synthetic}
    return task.wrap(net, meta)


def model(baton: str | Path, *, key_file: str | Path | None = None, expect_task: str | None = None) -> TaskModel:
    """The baton's model as its task's :class:`~medzoo.core.TaskModel` (what :func:`export` writes), in memory.

    Example:
        >>> model("site3.baton").predict(rgb)  # doctest: +SKIP
    """
    b = Baton.read(baton, key_file=key_file, expect_task=expect_task)
    _refuse_unchecked_signature(b, key_file, "using its model")
    return _model(b)


def export(baton: str | Path, out: str | Path, *, key_file: str | Path | None = None, half: bool = False,
           overwrite: bool = False) -> Path:
    """Write the baton's model as a medzoo model file (loadable by :func:`medzoo.core.load_model`)."""
    out = Path(out)
    b = Baton.read(baton, key_file=key_file)
    _refuse_unchecked_signature(b, key_file, "exporting its model")
    _refuse_existing(out, overwrite)
    return _model(b).save(out, half=half)
