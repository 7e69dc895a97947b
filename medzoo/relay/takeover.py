"""Taking over earlier work in a simulation: finished results (``simulate(reuse=...)``, the parts of a parallel run)
and the laps of a relay an interrupted run finished.

A result is taken over only when its identity matches (task, sites, budget, seed, device, initial weights, splits,
normalisation mode) and, for a relay, its strategy settings and order; a lap only when its baton is valid, chains to
the same start baton and was trained at the same site with the same settings and sample count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from medzoo.core import Task
from medzoo.relay.baton import Baton
from medzoo.relay.strategies import strategy_defaults
from medzoo.relay.trainer import state_fingerprint


def load_priors(paths: Sequence[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    """Earlier results to reuse from (``relay_results.json`` files, or benchmark files that hold one under
    ``results``); a file without ``init_sha256`` (older medzoo) takes the fingerprint of the
    ``init.safetensors`` beside it, when that file is there."""
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            continue
        r = json.loads(p.read_text())
        if isinstance(r.get("results"), Mapping) and "runs" in r["results"]:  # a published benchmark file
            r = r["results"]
        if "init_sha256" not in r and (p.parent / "init.safetensors").is_file():
            r["init_sha256"] = file_fingerprint(p.parent / "init.safetensors")
        out.append((str(p), r))
    return out


IDENTITY_DEFAULTS = {"train_split": "train", "test_split": "test", "norm_eval": "running"}  # what files written before these keys meant
BUDGET_DEFAULTS = {"lap_epochs": None, "augment": "standard"}  # budget fields added later, as files written before them meant


def _with_defaults(key: str, value: Any, ignore: Sequence[str] = ()) -> Any:
    if key != "budget" or not isinstance(value, Mapping):
        return value
    return {k: v for k, v in {**BUDGET_DEFAULTS, **value}.items() if k not in ignore}


def same_identity(result: Mapping[str, Any], identity: Mapping[str, Any], budget_ignore: Sequence[str] = ()) -> bool:
    """Whether an earlier result was made with the same task, sites, budget (but the fields in ``budget_ignore``),
    seed, device, init and splits."""
    return all(_with_defaults(k, result.get(k, IDENTITY_DEFAULTS.get(k)), budget_ignore) == _with_defaults(k, v, budget_ignore)
               for k, v in identity.items())


def file_fingerprint(path: Path) -> str:
    """:func:`~medzoo.relay.trainer.state_fingerprint` of the tensors in a medzoo model file."""
    from medzoo.core import read_model_file

    return state_fingerprint(read_model_file(path)[3])


def baton_matches(run: Mapping[str, Any]) -> bool:
    """Whether the final baton a run recorded is still that run's (a later run of the same strategy and order with
    other settings writes to the same path)."""
    try:
        b = Baton.read(run["baton"])
    except Exception:  # noqa: BLE001 - missing, unreadable or foreign: not this run's baton
        return False
    return {**strategy_defaults(run["strategy"]), **run.get("settings", {})} == \
        {**strategy_defaults(run["strategy"]), **b.strategy_settings} and b.sites == run.get("order")


def find_run(priors: Sequence[tuple[str, dict[str, Any]]], strategy: str, settings: Mapping[str, Any],
              order: list[str]) -> dict[str, Any] | None:
    """A finished run of ``strategy`` with ``settings`` in ``order`` among ``priors`` (settings an older medzoo did
    not record count as today's defaults), marked with where it came from."""
    defaults = strategy_defaults(strategy)
    for src, res in priors:
        for r in res.get("runs", []):
            if r.get("strategy") == strategy and r.get("order") == order and {**defaults, **r.get("settings", {})} == dict(settings):
                return {**r, "reused_from": src, "baton": r.get("baton") if baton_matches(r) else None}
    return None


def prior_baseline(priors: Sequence[tuple[str, dict[str, Any]]], name: str,
                    sites: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """The first earlier result holding all of baseline ``name`` (``single``: a model for every site), and its entries."""
    for src, r in priors:
        got = {k: v for k, v in r.get("baselines", {}).items() if k == name or k.startswith(name + ":")}
        if got and (name != "single" or set(got) == {f"single:{s}" for s in map(str, sites)}):
            return src, got
    return None


def start_matches(path: Path, task: Task, net0: nn.Module, init_sha: str, strategy: str, settings: Mapping[str, Any]) -> bool:
    """Whether ``path`` is already the start baton this relay would write (same task, network, initial weights
    ``init_sha`` (:func:`~medzoo.relay.trainer.state_fingerprint` of ``net0``), strategy and settings): then an
    interrupted run's later laps, chained to it, can be taken over."""
    try:
        b = Baton.read(path)
    except Exception:  # noqa: BLE001 - missing, unreadable or foreign: write a new one
        return False
    return (len(b.ledger) == 1 and b.ledger[0].get("kind") == "start" and b.task == task.spec.name
            and b.architecture == task.architecture(net0) and b.strategy == strategy
            and {**strategy_defaults(strategy), **b.strategy_settings} == json.loads(json.dumps(dict(settings), default=str))
            and not b.strategy_state
            and state_fingerprint(b.model_state) == init_sha)


LAP_DEFAULTS = {"augment": "standard"}  # training settings added later, as ledgers written before them meant


def finished_lap(prev: Path, nxt: Path, site: str, cfg: Mapping[str, Any], n_samples: int) -> dict[str, Any] | None:
    """The ledger entry of ``nxt`` when it is a finished lap of this relay: a valid baton whose ledger is ``prev``'s
    plus one training entry at ``site`` with the same training settings ``cfg`` and sample count; else None."""
    if not nxt.is_file():
        return None
    try:
        a, b = Baton.read(prev), Baton.read(nxt)
    except Exception:  # noqa: BLE001 - unreadable or edited: train the lap again
        return None
    e = b.ledger[-1]
    tc = e.get("train_config", {})
    same = (len(b.ledger) == len(a.ledger) + 1 and e.get("prev_hash") == a.ledger[-1]["hash"] and e.get("kind") == "train"
            and e.get("site") == site and e.get("n_samples") == n_samples and e.get("strategy_settings") == a.strategy_settings
            and all(tc.get(k, LAP_DEFAULTS.get(k, "missing")) == v for k, v in cfg.items()))
    return e if same else None
