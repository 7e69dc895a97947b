"""Simulation mode: run whole relays on one machine and compare them with the baselines on the same sites.

For every strategy and site order, the relay goes through the deployment API (a baton file per site, exactly as at
real sites); after every site the model is evaluated on every training site's test split, giving the accuracy
matrix ``R`` (see :mod:`medzoo.relay.metrics` for the definitions), then on the external sites never trained on.
Baselines (single-site, pooled, cyclic weight transfer, FedAvg, ensemble of single-site models) are trained with
the same loop, epochs and data subsets. Outputs: ``relay_results.json``, ``relay_report.md`` and a heatmap PNG of
``R`` per strategy, all labelled SYNTHETIC when the task's sites are synthetic.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from medzoo.core import Task, dataset_augment, save_model
from medzoo.errors import InputError
from medzoo.norm import apply_norm_eval, norm_eval_of
from medzoo.relay import DEFAULT_STRATEGY, api, metrics
from medzoo.relay import baselines as bl
from medzoo.relay.baton import Baton
from medzoo.relay.budget import BUDGETS, Budget, BudgetName
from medzoo.relay.strategies import list_strategies, make_strategy
from medzoo.relay.takeover import (
    find_run,
    finished_lap,
    load_priors,
    prior_baseline,
    same_identity,
    start_matches,
)
from medzoo.relay.trainer import TrainConfig, state_fingerprint
from medzoo.splits import not_held_out, shared_samples

BASELINES = ("single", "ensemble", "pooled", "cyclic", "fedavg")


class CachedDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Keeps each item after its first read: test splits are fixed, and some tasks generate or decode every item
    on access (synthetic sites, large images), which would otherwise repeat for every cell of ``R``."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.items: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        if i not in self.items:
            self.items[i] = self.ds[i]
        return self.items[i]


def _strategy_settings(sname: str, strategy_opts: Mapping[str, Mapping[str, Any]] | None,
                       b: Budget) -> tuple[dict[str, Any], dict[str, Any]]:
    """A strategy's options in this simulation (the budget's generator epochs for the relay recipe) and the full
    settings they give (what a reusable earlier run must match)."""
    opts = dict((strategy_opts or {}).get(sname, {}))
    if sname == "relay":
        opts.setdefault("gen_epochs", b.gen_epochs)
    return opts, make_strategy(sname, **opts).settings_json()


def _plan_parts(priors: Sequence[tuple[str, dict[str, Any]]], base_priors: Sequence[tuple[str, dict[str, Any]]],
                strat_names: Sequence[str], order_list: Sequence[list[str]],
                base_names: Sequence[str], strategy_opts: Mapping[str, Mapping[str, Any]] | None, b: Budget,
                sites: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """The parts a parallel simulation still has to run (label, keyword arguments): one per strategy and order, one per
    baseline group (the ensemble with the single-site models it is made of); what ``priors`` hold is left out."""
    parts = []
    for sname in strat_names:
        _, want = _strategy_settings(sname, strategy_opts, b)
        for order in order_list:
            if find_run(priors, sname, want, list(map(str, order))) is None:
                parts.append((f"{sname}-{'-'.join(Path(str(s)).name for s in order)}",
                              {"strategies": [sname], "orders": [list(map(str, order))], "baselines": "none"}))
    groups = [[n for n in ("single", "ensemble") if n in base_names]] + [[n] for n in base_names if n not in ("single", "ensemble")]
    for g in groups:
        if g and any(prior_baseline(base_priors, n, sites) is None for n in g):
            parts.append(("baseline-" + "+".join(g), {"strategies": [], "baselines": g}))
    return parts


def _eval(task: Task, net: nn.Module, ds: Any, device: str) -> tuple[float, list[float]]:
    res = task.evaluate(net, ds, device=device)
    key = task.spec.primary_metric
    return float(res.metrics[key]), [float(v) for v in res.per_sample.get(key, [])]


PARTIAL_BASELINES = "baselines_partial.json"


def _check_before_writing(task: Any, sites: Sequence[str | Path], external: Sequence[str | Path],
                          strat_names: Sequence[str], strategy_opts: Mapping[str, Mapping[str, Any]] | None,
                          out: str | Path, train_split: str = "train", test_split: str = "test") -> None:
    """Refuse what would fail later or measure the wrong thing, before anything is written: unknown strategies or
    settings, sites that are neither built in nor an existing folder, a training site folder whose test split holds
    training samples (a folder without a split file), an ``out`` that is a file."""
    from medzoo.relay.strategies import list_strategies, make_strategy

    unknown = [n for n in strat_names if n not in list_strategies()]
    if unknown:
        raise InputError(f"unknown strategy(ies) {unknown}; known: {', '.join(list_strategies())}")
    foreign = sorted(set(strategy_opts or {}) - set(list_strategies()))
    if foreign:
        raise InputError(f"settings given for unknown strategy(ies) {foreign}; known: {', '.join(list_strategies())}")
    for n in strat_names:
        make_strategy(n, **dict((strategy_opts or {}).get(n, {})))  # a bad key or value fails here, not after training
    builtin = set(task.builtin_sites())
    for s in [*sites, *external]:
        if str(s) not in builtin and not Path(s).is_dir():
            raise InputError(f"site {str(s)!r} is neither a built-in site of {task.spec.name} "
                             f"({', '.join(sorted(builtin)) or 'none'}) nor an existing folder")
    for s in sites:  # built-in sites hold their test samples out; a folder may not
        if str(s) not in builtin:
            test = task.build_dataset(s, test_split)
            shared = shared_samples(task.build_dataset(s, train_split), test)
            if shared:
                raise InputError(f"{not_held_out(test_split, train_split, shared, len(test))}: the accuracy "
                                 "matrix would measure the relays on images they trained on; give the folder a "
                                 "held-out test split (the task's folder layout), or name it with --external", s)
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError("--out must be a folder (the simulation writes JSON, Markdown, heatmaps and batons there); "
                         "this is a file", out)


def simulate(task_name: str, sites: Sequence[str], out: str | Path, *, strategies: Sequence[str] | str = DEFAULT_STRATEGY,
             orders: Literal["given", "all"] | Sequence[Sequence[str]] = "given", budget: BudgetName | Budget = "tiny",
             external: Sequence[str] = (), baselines: Sequence[str] | Literal["all", "none"] = "all", seed: int = 0,
             device: str = "cpu", init: str | None = None, strategy_opts: Mapping[str, Mapping[str, Any]] | None = None,
             progress: bool = False, log: Callable[[str], None] = print, reuse: Sequence[str | Path] = (),
             jobs: int = 1, train_split: str = "train", test_split: str = "test", norm_eval: str | None = None,
             **budget_overrides: Any) -> dict[str, Any]:
    """Run relays and baselines on ``sites``; write JSON, Markdown and heatmaps under ``out``; return the results.

    Args:
        task_name: registry name. sites: training sites (built-in names or folders), in the given order.
        strategies: names, or ``"all"``.
        orders: ``"given"``, ``"all"`` (every permutation) or explicit orders.
        budget: ``"tiny"``, ``"small"``, ``"full"`` or a :class:`Budget`; ``**budget_overrides`` replace fields
            (e.g. ``epochs=3``); an override of ``None`` means "not given" and keeps the budget's value, so to use
            all samples pass a :class:`Budget` with ``max_train=None``.
        external: sites never trained on; the final models are evaluated there too.
        baselines: subset of ``("single", "ensemble", "pooled", "cyclic", "fedavg")``, ``"all"`` or ``"none"``.
        init: shipped weights name or model file every method starts from (default: one random init).
        strategy_opts: per-strategy settings, e.g. ``{"ewc": {"lam": 100}}``.
        reuse: earlier ``relay_results.json`` files. A relay run (same strategy, settings and order) or a baseline
            (``single`` only with a model for every site) found there is taken over instead of trained again when
            that file was made with the same task, sites, budget, seed, device and initial weights (sha256 over
            their tensors); several files may each give a part (e.g. the parts of a parallel run). Reused items keep
            their recorded wall time, which counts in this result's ``wall_s``; ``reused`` lists them and where
            each came from. A published benchmark file (the results under ``results``) serves as well. Baselines
            are also taken over from results whose budget differs only in ``lap_epochs``, which they do not use.
        train_split, test_split: the task's splits to train on and to measure on (e.g. ``"fit"`` / ``"val"`` to
            choose settings on a validation split held out of the training images, never the test split).
        norm_eval: where every method's network takes its BatchNorm statistics from at inference, ``"running"``
            or ``"image"`` (:mod:`medzoo.norm`; set on the initial network, so every relay, baseline and baton
            has it); None keeps the initial network's.
        jobs: run the relays (one part per strategy and order) and the baselines (single-site with the ensemble,
            pooled, cyclic, FedAvg) as this many processes at a time (:mod:`medzoo.relay.parallel`; several can
            share one GPU), under ``out/parts/``, then take them over. ``wall_s`` is then this call's elapsed time
            (plus any reused items' recorded time); ``parallel`` adds the parts' own times. Parts finished by an
            interrupted earlier call are kept.

    Example:
        >>> simulate("midline", ["synth-a", "synth-b"], "runs/sim", strategies="all")  # doctest: +SKIP
    """
    from medzoo import get_task
    from medzoo.io import atomic_write_json
    from medzoo.relay import report

    t_start = time.perf_counter()
    task = get_task(task_name)
    b = BUDGETS[budget] if isinstance(budget, str) else budget
    b = replace(b, **{k: v for k, v in budget_overrides.items() if v is not None})
    if b.lap_epochs is not None and len(b.lap_epochs) != len(sites):
        raise InputError(f"lap_epochs {list(b.lap_epochs)} gives {len(b.lap_epochs)} laps for {len(sites)} sites; "
                         "give one epoch count per site")
    aug = dataset_augment(task, b.augment)  # refuses a level the task does not have, before anything is written
    strat_names = list_strategies() if strategies == "all" else list(strategies if not isinstance(strategies, str) else [strategies])
    order_list = [list(o) for o in itertools.permutations(sites)] if orders == "all" else \
        [list(sites)] if orders == "given" else [list(o) for o in orders]
    if len(set(map(str, sites))) != len(sites):
        raise InputError(f"sites {list(map(str, sites))} name a site more than once; give each site once")
    trained_too = [str(x) for x in external if str(x) in set(map(str, sites))]
    if trained_too or len(set(map(str, external))) != len(external):
        raise InputError(f"external sites {list(map(str, external))} must be sites never trained on, each named once"
                         + (f"; {trained_too} also in --sites" if trained_too else "")
                         + ": an external result would otherwise not be external")
    for o in order_list:  # the metrics index R by the position a site is trained at: each site exactly once
        if sorted(map(str, o)) != sorted(map(str, sites)):
            raise InputError(f"order {list(map(str, o))} is not an ordering of the sites {list(map(str, sites))}: a relay "
                             "order visits every site exactly once (the cyclic baseline covers several passes)")
    base_names = list(BASELINES) if baselines == "all" else [] if baselines == "none" else list(baselines)
    unknown = [n for n in base_names if n not in BASELINES]
    if unknown:  # e.g. ["all"] from a comma-split option: refuse rather than silently train no baseline
        raise InputError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)} (or 'all' / 'none' alone)")
    _check_before_writing(task, sites, external, strat_names, strategy_opts, out, train_split, test_split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hib = task.spec.higher_is_better
    syn = task.spec.synthetic
    tag = "SYNTHETIC " if syn else ""

    torch.manual_seed(seed)
    net0 = task.build_model(weights=init) if init is not None else task.build_model()
    if norm_eval is not None:
        apply_norm_eval(task, net0, norm_eval)
    partial_path = Path(out) / PARTIAL_BASELINES  # baselines an interrupted serial call finished
    priors = load_priors([*reuse, partial_path])  # before init.safetensors is rewritten: an old file may need its sha256
    init_path = save_model(task, net0, out / "init.safetensors", meta={"note": "initial weights of the simulation"})
    init_sha = state_fingerprint(net0)
    identity = {"task": task_name, "sites": list(map(str, sites)), "external": list(map(str, external)),
                "budget": b.as_json(), "seed": seed, "device": device, "init": init or "random", "init_sha256": init_sha,
                "train_split": train_split, "test_split": test_split, "norm_eval": norm_eval_of(net0)}
    # baselines do not depend on the relay's lap schedule: theirs are taken over from results that differ only there
    base_priors = [(src, r) for src, r in priors if same_identity(r, identity, budget_ignore=("lap_epochs",))]
    priors = [(src, r) for src, r in priors if same_identity(r, identity)]
    reused: dict[str, Any] = {"runs": [], "baselines": {}, "wall_s": 0.0}
    part_srcs: set[str] = set()
    parallel: dict[str, Any] = {}
    if jobs > 1:
        from medzoo._registry import user_task_path
        from medzoo.relay import parallel as par

        def matching(paths: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
            return [(src, r) for src, r in load_priors(paths) if same_identity(r, identity)]

        part_files = sorted((out / "parts").glob(f"*/{par.PART_RESULTS}"))  # parts of an interrupted or earlier call
        priors += matching(part_files)
        base_priors += [(src, r) for src, r in load_priors(part_files)  # baselines do not use the lap schedule
                        if same_identity(r, identity, budget_ignore=("lap_epochs",))]
        kw = {"task_name": task_name, "sites": list(map(str, sites)), "external": list(map(str, external)),
              "budget": b.as_json(), "seed": seed, "device": device, "init": init, "train_split": train_split,
              "test_split": test_split, "norm_eval": norm_eval,
              "strategy_opts": {k: dict(v) for k, v in (strategy_opts or {}).items()}, "progress": False}
        parts = [{"label": label, "dir": str(out / "parts" / label), "task_factory": user_task_path(task_name),
                  "threads": torch.get_num_threads(), "kwargs": {**kw, **pk}}
                 for label, pk in _plan_parts(priors, base_priors, strat_names, order_list, base_names, strategy_opts, b, sites)]
        log(f"{tag}relay simulation in {len(parts)} parallel parts, {jobs} at a time, under {out / 'parts'}")
        t_par = time.perf_counter()
        new_parts = matching(par.run_parts(parts, jobs, log))
        part_srcs = {src for src, _ in new_parts}
        priors += new_parts
        base_priors += new_parts
        parallel = {"jobs": jobs, "parts_run": len(parts), "parts_elapsed_s": round(time.perf_counter() - t_par, 1),
                    "sum_of_part_run_times_s": 0.0}
    all_sites = list(dict.fromkeys([*sites, *external]))
    test = {s: CachedDataset(api.subset(task.build_dataset(s, test_split), b.max_test, seed)) for s in all_sites}
    train = {s: api.subset(task.build_dataset(s, train_split, augment=aug), b.max_train, seed) for s in sites}
    init_scores = {s: _eval(task, net0, test[s], device)[0] for s in all_sites}
    cfg = TrainConfig(epochs=b.epochs, batch_size=b.batch_size, lr=b.lr, seed=seed)
    log(f"{tag}relay simulation: task={task_name} sites={','.join(sites)} external={','.join(external) or '-'} "
        f"strategies={','.join(strat_names)} orders={len(order_list)} budget={b.as_json()}")

    runs = []
    for sname in strat_names:
        opts, want = _strategy_settings(sname, strategy_opts, b)
        for order in order_list:
            prior = find_run(priors, sname, want, list(map(str, order)))
            if prior is not None and prior["reused_from"] in part_srcs:  # trained by a part of this call
                src = prior.pop("reused_from")
                runs.append({**prior, "part": str(Path(src).parent)})
                parallel["sum_of_part_run_times_s"] += float(prior.get("wall_s", 0.0))
                log(f"  {tag}{sname} [{' -> '.join(prior['order'])}]: final avg {prior['final_avg']:.4f} (part {Path(src).parent.name})")
                continue
            if prior is not None:
                runs.append(prior)
                reused["runs"].append(f"{sname}:{'-'.join(prior['order'])}")
                reused["wall_s"] += float(prior.get("wall_s", 0.0))
                log(f"  {tag}{sname} [{' -> '.join(prior['order'])}]: reused from {prior['reused_from']} "
                    f"(final avg {prior['final_avg']:.4f})")
                continue
            t0 = time.perf_counter()
            bdir = out / "batons" / sname / "-".join(Path(str(s)).name for s in order)
            prev = bdir / "0-start.baton"
            if not start_matches(prev, task, net0, init_sha, sname, want):  # else an interrupted run's start: its laps chain on
                api.start(task_name, prev, init=str(init_path), strategy=sname, overwrite=True, **opts)
            R: list[list[float]] = []
            samples: list[list[list[float]]] = []
            taken_over: list[dict[str, Any]] = []
            lap_cfg = {"epochs": 0, "batch_size": b.batch_size, "lr": b.lr, "seed": seed, "device": device,
                   "split": train_split, "max_samples": b.max_train, "augment": b.augment}
            for i, s in enumerate(order):
                nxt = bdir / f"{i + 1}-{Path(str(s)).name}.baton"
                lap_cfg["epochs"] = b.epochs_at(i)
                lap = finished_lap(prev, nxt, str(s), lap_cfg, n_samples=len(train[s]))
                if lap is not None:  # a lap an interrupted run finished: the same arriving baton, site and settings
                    taken_over.append({"site": str(s), "train_wall_s": lap.get("train_stats", {}).get("wall_s", 0.0)})
                    log(f"  {tag}{sname} [{' -> '.join(map(str, order))}] lap {i + 1} ({s}): taken over from {nxt.name}")
                else:  # resume=True: a killed lap continues from its last epoch checkpoint (one of another run is ignored)
                    api.train(prev, s, str(s), nxt, epochs=b.epochs_at(i), batch_size=b.batch_size, lr=b.lr, seed=seed,
                              device=device, resume=True, max_samples=b.max_train, eval_split=None, overwrite=True,
                              progress=progress, split=train_split, augment=aug)
                prev = nxt
                bt = Baton.read(nxt)
                _, net, _ = api._build(bt)
                row = [_eval(task, net, test[t], device) for t in order]
                R.append([r[0] for r in row])
                samples.append([r[1] for r in row])
                log(f"  {tag}{sname} [{' -> '.join(map(str, order))}] after {s}: "
                    + "  ".join(f"{t}={v:.4f}" for t, v in zip(order, R[-1])))
            ext = {x: _eval(task, net, test[x], device)[0] for x in external}
            final_s, diag_s = samples[-1], [samples[j][j] for j in range(len(order))]
            ci = metrics.bootstrap_ci(final_s, diag_s, n_boot=b.n_boot, seed=seed, higher_is_better=hib) \
                if all(final_s) else {}
            notes = [{"site": e["site"], **e.get("note", {})} for e in bt.ledger if e.get("kind") == "train"]
            runs.append({"strategy": sname, "settings": bt.strategy_settings, "order": list(map(str, order)), "R": R,
                         "final_avg": metrics.final_average(R), "bwt": metrics.backward_transfer(R, hib),
                         "forgetting": metrics.forgetting(R, hib),
                         "fwt": metrics.forward_transfer(R, [init_scores[s] for s in order], hib),
                         "ci": ci, "final_row": dict(zip(map(str, order), R[-1])), "external": ext,
                         "per_sample": {"final": final_s, "diag": diag_s}, "strategy_notes": notes,
                         "baton": str(prev), "wall_s": round(time.perf_counter() - t0 + sum(float(t["train_wall_s"]) for t in taken_over), 1),
                         **({"laps_taken_over": taken_over} if taken_over else {})})

    base: dict[str, Any] = {}
    done_here: list[str] = []
    for name in base_names:  # each baseline from the first earlier result that holds all of it
        found = prior_baseline(base_priors, name, sites)
        if found is None:
            continue
        src, got = found
        base.update(got)
        wall = sum(float(v.get("wall_s", 0.0)) for v in got.values())
        if src in part_srcs:
            done_here.append(name)
            parallel["sum_of_part_run_times_s"] += wall
            log(f"  {tag}baseline {name}: from part {Path(src).parent.name}")
        else:
            reused["baselines"][name] = str(src)
            reused["wall_s"] += wall
            log(f"  {tag}baseline {name}: reused from {src}")
    todo = [n for n in base_names if n not in reused["baselines"] and n not in done_here]
    if todo:
        datasets = [train[s] for s in sites]

        def score(net: nn.Module) -> dict[str, Any]:
            row = {s: _eval(task, net, test[s], device) for s in all_sites}
            fin = [row[s][1] for s in sites]
            return {"row": {s: row[s][0] for s in sites}, "final_avg": float(sum(row[s][0] for s in sites) / len(sites)),
                    "external": {x: row[x][0] for x in external},
                    "ci": metrics.bootstrap_ci(fin, n_boot=b.n_boot, seed=seed, higher_is_better=hib) if all(fin) else {}}

        def save_partial() -> None:  # each finished baseline at once: an interrupted call loses none of them
            atomic_write_json(partial_path, {**identity, "runs": [], "baselines": base, "partial": True})

        singles = {}
        if "single" in todo or "ensemble" in todo:  # the ensemble's members are the single-site models
            for s in sites:
                t0 = time.perf_counter()
                singles[s] = bl.train_single(task, net0, train[s], cfg, site=str(s), device=device, progress=progress)
                if "single" in todo:
                    base[f"single:{s}"] = {**score(singles[s]), "wall_s": round(time.perf_counter() - t0, 1)}
                    log(f"  {tag}baseline single:{s}: " + "  ".join(f"{k}={v:.4f}" for k, v in base[f"single:{s}"]["row"].items()))
            if "single" in todo:
                save_partial()
        makers: dict[str, Callable[[], nn.Module]] = {
            "ensemble": lambda: bl.LogitEnsemble(list(singles.values())),
            "pooled": lambda: bl.train_pooled(task, net0, datasets, cfg, device=device, progress=progress),
            "cyclic": lambda: bl.train_cyclic(task, net0, datasets, cfg, cycles=b.cycles, device=device, progress=progress),
            "fedavg": lambda: bl.train_fedavg(task, net0, datasets, cfg, rounds=b.rounds, device=device, progress=progress),
        }
        for name in [n for n in BASELINES if n != "single" and n in todo]:
            t0 = time.perf_counter()
            base[name] = {**score(makers[name]()), "wall_s": round(time.perf_counter() - t0, 1)}
            log(f"  {tag}baseline {name}: " + "  ".join(f"{k}={v:.4f}" for k, v in base[name]["row"].items()))
            save_partial()
    base = dict(sorted(base.items(), key=lambda kv: BASELINES.index(kv[0].split(":", 1)[0])))  # one order, reused or not

    order_study = {}
    if len(order_list) > 1:
        for sname in strat_names:
            finals = torch.tensor([r["final_avg"] for r in runs if r["strategy"] == sname])
            order_study[sname] = {"n_orders": len(finals), "final_avg_mean": float(finals.mean()),
                                  "final_avg_std": float(finals.std()) if len(finals) > 1 else 0.0,
                                  "final_avg_min": float(finals.min()), "final_avg_max": float(finals.max())}
    results = {"task": task_name, "synthetic": syn, "sites": list(map(str, sites)), "external": list(map(str, external)),
               "primary_metric": task.spec.primary_metric, "higher_is_better": hib, "budget": b.as_json(), "seed": seed,
               "device": device, "init": init or "random", "train_split": train_split, "test_split": test_split,
               "norm_eval": identity["norm_eval"], "init_scores": init_scores, "runs": runs,
               "baselines": base, "order_study": order_study, "definitions": report.DEFINITIONS,
               "init_sha256": init_sha, "reused": reused, **({"parallel": parallel} if parallel else {}),
               "wall_s": round(time.perf_counter() - t_start + reused["wall_s"], 1)}
    atomic_write_json(out / "relay_results.json", results)
    partial_path.unlink(missing_ok=True)  # everything is in relay_results.json now
    report.write_all(results, out)
    log(report.summary_text(results))
    return results
