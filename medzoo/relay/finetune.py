"""Fine-tune a pretrained model at one new site without forgetting what it knew, in one call (no baton): the
continual-learning strategies of the relay applied to a single step, and metadata that describe the new model."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medzoo.core import TaskModel
from medzoo.relay.baton import now
from medzoo.relay import DEFAULT_STRATEGY
from medzoo.relay.strategies import make_strategy
from medzoo.relay.trainer import TrainConfig, train_site


def finetune(task_model: TaskModel, data: str | Path, site: str | None = None, strategy: str = DEFAULT_STRATEGY, *,
             epochs: int = 10, batch_size: int = 8, lr: float = 1e-3, seed: int = 0, device: str = "cpu",
             n_prev: int | None = None, progress: bool = True, **strategy_opts: Any) -> TaskModel:
    """Fine-tune a pretrained model at one new site without forgetting what it knew: one call.

    The earlier data are not available, so ``ewc``/``mas`` estimate importances at the arriving weights on the
    new data, and ``relay`` uses merge + distillation without replay (no generator travelled with the model).

    Args:
        task_model: e.g. ``medzoo.weights.load_pretrained(task, "fundus-vessels")``; not modified.
        data: built-in site name or a folder in the task's layout.
        site: name recorded in the model's metadata (default: the folder name).
        strategy: ``"lwf"`` (default), ``"ewc"``, ``"mas"``, ``"relay"`` or ``"naive"``.
        n_prev: training samples behind the pretrained model (for the relay merge and ``alpha_scale="samples"``),
            in the task dataset's units (patches per epoch for fundus vessels); default from its metadata
            (``n_train``, the card's ``extra.n_train``, or ``extra.relay.n_samples``), else the new site's size,
            recorded as assumed in the ``finetuned`` entry.

    Returns:
        A new :class:`~medzoo.core.TaskModel` whose metadata describe the new model, not the pretrained one: name
        ``<base>+<site>``, the sites extended by this one, no metrics (it has not been evaluated: measure it on
        held-out data), the pretrained model's identity under ``finetuned_from``, the inference settings
        (``extra``) kept.

    Example:
        >>> tm = finetune(load_pretrained(task, "midline"), "synth-c", epochs=2)  # doctest: +SKIP
    """
    task = task_model.task
    net = copy.deepcopy(task_model.net)
    if strategy == "relay":
        strategy_opts.setdefault("replay", False)
    strat = make_strategy(strategy, **strategy_opts)
    ds = task.build_dataset(data, "train", augment=True)
    n_new = len(ds)  # type: ignore[arg-type]
    n_prev_assumed = False
    if n_prev is None:
        n_prev = _n_train(task_model.meta)
        if n_prev is None:
            n_prev, n_prev_assumed = n_new, True
    name = site or Path(str(data)).name
    stats = train_site(task, net, ds, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed), hooks=[strat],
                       site_name=name, site_index=1, n_seen=n_prev, device=device, progress=progress)
    step = {"site": name, "strategy": strategy, "strategy_settings": strat.settings_json(), "n_samples": n_new,
            "n_prev": n_prev, **({"n_prev_assumed": True} if n_prev_assumed else {}), "epochs": epochs,
            "loss": stats["loss"], "when": now()}
    return task.wrap(net.eval(), finetuned_meta(task_model.meta, step, n_train=n_prev + n_new))


def _n_train(meta: Mapping[str, Any]) -> int | None:
    """Training samples behind a model, from its metadata, or None when it does not say."""
    extra = meta.get("extra") if isinstance(meta.get("extra"), dict) else {}
    relay = extra.get("relay") if isinstance(extra.get("relay"), dict) else {}
    for v in (meta.get("n_train"), extra.get("n_train"), relay.get("n_samples")):
        if isinstance(v, (int, float)) and v > 0:
            return int(v)
    return None


# card fields that describe the network and its use, true of a fine-tuned copy too (``extra`` holds inference
# settings such as a threshold); the others (file, checksum, metrics, recipe, cost) belong to the pretrained file
_KEPT_FIELDS = ("task", "architecture", "num_params", "input", "preprocessing", "classes", "intended_use", "license",
                "data_terms", "synthetic", "extra")


def finetuned_meta(base: Mapping[str, Any], step: Mapping[str, Any], *, n_train: int) -> dict[str, Any]:
    """Metadata of a model fine-tuned from one with metadata ``base`` by ``step`` (a ``finetuned`` entry)."""
    base_name = str(base.get("name") or "model")
    site, strategy = step["site"], step["strategy"]
    meta = {k: base[k] for k in _KEPT_FIELDS if k in base}
    meta.update({
        "name": f"{base_name}+{site}",
        "sites": [*base.get("sites", []), site],
        "training_data": f"{base.get('training_data', base_name)}; then fine-tuned at site {site} "
                         f"({step['n_samples']} samples, strategy {strategy})",
        "metrics": {},
        "summary": (("SYNTHETIC " if base.get("synthetic") else "") + f"{base_name} fine-tuned at site {site} with "
                    f"{strategy} ({step['epochs']} epoch{'' if step['epochs'] == 1 else 's'}). Not evaluated by "
                    "medzoo: measure it on held-out data (`medzoo evaluate`) before use."),
        "finetuned_from": {k: base[k] for k in ("name", "file", "sha256", "metrics", "summary", "finetuned_from")
                           if k in base},
        "finetuned": [*base.get("finetuned", []), dict(step)],
        "n_train": n_train,
    })
    return meta
