"""``medzoo relay start|train|inspect|evaluate|verify|export|simulate|strategies``.

Handlers import torch and the relay package lazily, so ``medzoo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from medzoo.cli.argtypes import add_training_options
from medzoo.cli.argtypes import non_negative_int as _non_negative
from medzoo.cli.argtypes import positive_float as _positive_float
from medzoo.cli.argtypes import positive_int as _positive
from medzoo.errors import InputError
from medzoo.relay import DEFAULT_STRATEGY


def _opts(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"medzoo relay: --opt expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip().replace("-", "_")] = v.strip()
    return out


def _csv(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]




def _budgets_in_words() -> str:
    from medzoo.relay.budget import BUDGETS  # light: no torch

    def n(v: int | None) -> str:
        return "all" if v is None else str(v)

    return ", ".join(f"{k} {b.epochs} / {n(b.max_train)} / {n(b.max_test)}" + (" (default)" if k == "tiny" else "")
                     for k, b in BUDGETS.items())


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    relay = sub.add_parser("relay", help="relay learning: train a model that travels between sites as a file (the baton)",
                           description="Relay learning: the model travels from site to site as one baton file; each site "
                                       "trains on its own data only. See docs/relay.md.")
    rs = relay.add_subparsers(dest="relay_command", metavar="STEP")
    relay.set_defaults(func=lambda a: (relay.print_help(), 0)[1])

    p = rs.add_parser("start", help="create the first baton of a relay")
    p.add_argument("--task", required=True, help="task name (see `medzoo list`)")
    p.add_argument("--out", type=Path, required=True, help="baton file to write")
    p.add_argument("--init", help="shipped weights name or model file to start from (default: random init)")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"continual-learning strategy (see `medzoo relay strategies`); default {DEFAULT_STRATEGY}")
    p.add_argument("--opt", action="append", metavar="KEY=VALUE", help="strategy setting, repeatable (e.g. --opt lam=100)")
    p.add_argument("--key-file", type=Path, help="sign the baton with this shared consortium key (HMAC-SHA256)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--seed", type=int, default=0, help="seeds the random initialisation (without --init)")
    p.add_argument("--norm-eval", choices=("running", "image"),
                   help="BatchNorm statistics at inference: running (default) or each image's own (fundus tasks)")
    p.set_defaults(func=cmd_start)

    p = rs.add_parser("train", help="train the baton's model on this site's data and write the next baton")
    p.add_argument("baton", type=Path, help="the arriving baton")
    p.add_argument("--data", required=True, help="built-in site name or a folder in the task's layout")
    p.add_argument("--site", required=True, help="this site's name, recorded in the ledger")
    p.add_argument("--out", type=Path, required=True,
                   help="the baton to write (the arriving one is never modified: --out may not name it)")
    add_training_options(p, data="this site's data", device_help="cpu, cuda, cuda:1 (several GPUs: launch with torchrun)")
    p.add_argument("--num-workers", type=_non_negative, default=0, help="data loader processes (>= 0; default 0)")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--max-samples", type=_positive, help="use at most this many training samples (>= 1)")
    p.add_argument("--augment", default="standard", metavar="LEVEL",
                   help="training augmentation: standard (default) or a level the task has (fundus: strong, wider "
                        "geometric and photometric ranges); recorded in the ledger")
    p.add_argument("--no-resume", action="store_true",
                   help="delete the checkpoints of an earlier, interrupted run (only medzoo's files) and start over")
    p.add_argument("--work-dir", type=Path,
                   help="checkpoint folder (default: .<out>.work beside --out); must be new, empty or one medzoo made: "
                        "a folder holding other files is refused. Removed after success (only medzoo's files)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-replay", dest="replay", action="store_false", default=None,
                   help="this site uses no generative replay and keeps its images out of the generator")
    g.add_argument("--replay", dest="replay", action="store_true",
                   help="use replay (the default when the strategy has it; refused on a relay started with replay=false)")
    p.add_argument("--task", help="refuse a baton for any other task")
    p.add_argument("--key-file", type=Path,
                   help="shared key: verify the arriving baton and sign the new one (required for a signed baton)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the arriving baton)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = rs.add_parser("inspect", help="show the ledger: sites, sample counts, metrics, strategy, versions, hashes")
    p.add_argument("baton", type=Path, help="the baton file")
    p.add_argument("--json", action="store_true", help="print the full content as JSON")
    p.add_argument("--key-file", type=Path, help="shared key: also check the signature")
    p.set_defaults(func=cmd_inspect)

    p = rs.add_parser("evaluate", help="evaluation lap: measure the model on this site's test data; append to the ledger")
    p.add_argument("baton", type=Path, help="the baton file")
    p.add_argument("--data", required=True, help="built-in site name or a folder in the task's layout")
    p.add_argument("--site", required=True, help="this site's name, recorded in the ledger")
    p.add_argument("--split", default="test", choices=("train", "test", "all"),
                   help="which of the site's samples to measure (default test)")
    p.add_argument("--out", type=Path, help="write the updated baton here (default: update the baton in place, atomically); "
                   "an existing file other than the baton is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--key-file", type=Path, help="shared key: verify the baton and sign the updated one (required for a signed baton)")
    p.set_defaults(func=cmd_evaluate)

    p = rs.add_parser("verify", help="check content hash, ledger chain and (with --key-file) the signature")
    p.add_argument("baton", type=Path, help="the baton file")
    p.add_argument("--key-file", type=Path, help="shared key: also check the signature (HMAC-SHA256)")
    p.set_defaults(func=cmd_verify)

    p = rs.add_parser("export", help="write the baton's model as a medzoo model file (for predict/evaluate/load)")
    p.add_argument("baton", type=Path, help="the baton file")
    p.add_argument("--out", type=Path, required=True, help="the .safetensors model file to write")
    p.add_argument("--half", action="store_true", help="store fp16 weights")
    p.add_argument("--key-file", type=Path, help="shared key: check the signature before exporting")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_export)

    p = rs.add_parser("simulate", help="run whole relays and baselines on one machine; accuracy matrix, BWT, forgetting")
    p.add_argument("--task", required=True, help="task name (see `medzoo list`)")
    p.add_argument("--sites", required=True, help="comma-separated training sites, in relay order")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY,
                   help=f"comma-separated strategies, or 'all' (default {DEFAULT_STRATEGY})")
    p.add_argument("--orders", default="given", choices=("given", "all"),
                   help="given: the order of --sites (default); all: every site order")
    p.add_argument("--budget", default="tiny", choices=("tiny", "small", "full"),
                   help="epochs per site / training and test samples per site: " + _budgets_in_words()
                        + " (tiny checks the mechanics only, its numbers mean nothing; the options below override "
                          "single values)")
    p.add_argument("--external", default="", help="comma-separated sites never trained on (evaluated at the end)")
    p.add_argument("--baselines", default="all", help="'all', 'none' or a comma list of single,ensemble,pooled,cyclic,fedavg")
    p.add_argument("--out", type=Path, required=True, help="output folder (JSON, Markdown, heatmap PNGs, batons); "
                   "rerun into it after an interruption to take over every finished lap")
    p.add_argument("--init", help="shipped weights name or model file every method starts from")
    p.add_argument("--epochs", type=_positive, help="override the budget's epochs per site (>= 1)")
    p.add_argument("--lap-epochs", help="comma-separated epochs for each position of a relay's order, e.g. 10,4,4 "
                   "(a longer first lap from the initial weights, shorter fine-tuning laps); baselines keep --epochs")
    p.add_argument("--max-train", type=_positive, help="override the budget's training samples per site (>= 1)")
    p.add_argument("--max-test", type=_positive, help="override the budget's test samples per site (>= 1)")
    p.add_argument("--batch-size", type=_positive, help="override the budget's samples per step (>= 1)")
    p.add_argument("--lr", type=_positive_float, help="override the budget's peak learning rate (> 0)")
    p.add_argument("--augment", metavar="LEVEL", help="training augmentation of every method: standard (default) or a "
                   "level the task has (fundus: strong)")
    p.add_argument("--opt", action="append", metavar="STRATEGY.KEY=VALUE", help="strategy setting, e.g. ewc.lam=100")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights, the training samples drawn and "
                   "their order, and which test samples are measured where the budget or --max-test caps them (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--progress", action="store_true", help="show per-epoch progress bars")
    p.add_argument("--jobs", type=_positive, default=1,
                   help="run the relays and baselines as this many processes at a time (several can share one GPU)")
    p.add_argument("--norm-eval", choices=("running", "image"),
                   help="BatchNorm statistics at inference for every method: running (default) or each image's own")
    p.set_defaults(func=cmd_simulate)

    p = rs.add_parser("strategies", help="list strategies and their settings")
    p.set_defaults(func=cmd_strategies)


def cmd_start(args: argparse.Namespace) -> int:
    from medzoo.relay import api

    path = api.start(args.task, args.out, init=args.init, strategy=args.strategy, key_file=args.key_file,
                     overwrite=args.overwrite, seed=args.seed, norm_eval=args.norm_eval, **_opts(args.opt))
    print(f"started relay for {args.task} with strategy {args.strategy}: {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from medzoo.relay import api

    path = api.train(args.baton, args.data, args.site, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     seed=args.seed, device=args.device, resume=not args.no_resume, key_file=args.key_file, replay=args.replay,
                     work_dir=args.work_dir, max_samples=args.max_samples, amp=not args.no_amp, num_workers=args.num_workers,
                     progress=not args.quiet, overwrite=args.overwrite, expect_task=args.task, augment=args.augment)
    if path is not None:
        info = api.inspect(path)
        last = info["ledger"][-1]
        tag = " (SYNTHETIC data)" if last.get("synthetic") else ""
        from medzoo.cli.models import print_metrics

        n_ep = last["epochs"]
        print(f"site {args.site}: trained on {last['n_samples']} samples, {n_ep} epoch{'' if n_ep == 1 else 's'}{tag}")
        for site, metrics in last["metrics"].items():
            if "skipped" in metrics:
                print(f"no test metrics recorded at {site}: {metrics['skipped']}")
            else:
                print(f"measured at {site} [{last.get('metrics_split') or 'test'}]:")
                print_metrics(metrics)
        print(f"wrote {path} (sites so far: {' -> '.join(info['sites'])})")
    return 0


def _fmt_metrics(m: dict[str, Any], primary: str | None = None, limit: int = 3) -> str:
    """Each site's metrics, short: the task's primary metric first, then others, no counts, at most ``limit``."""
    from medzoo.core import is_count_metric as _is_count

    parts = []
    for site, vals in (m or {}).items():
        if isinstance(vals, dict):
            keys = [k for k in vals if not _is_count(k)]
            if primary in keys:
                keys = [primary, *[k for k in keys if k != primary]]
            shown = ", ".join(f"{k}={vals[k]:.4f}" if isinstance(vals[k], (int, float)) and not isinstance(vals[k], bool)
                              else f"{k}={vals[k]}" for k in keys[:limit])
            parts.append(f"{site}: {shown}")
    return "; ".join(parts)


def _primary_metric(task_name: str) -> str | None:
    try:
        from medzoo import get_task

        return str(get_task(task_name).spec.primary_metric)
    except Exception:  # a task this install does not know: show the metrics without a preference
        return None


def cmd_inspect(args: argparse.Namespace) -> int:
    from medzoo.relay import api

    info = api.inspect(args.baton, key_file=args.key_file)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    sig = "signed, signature checked" if info["signature_checked"] else "signed (pass --key-file to check)" if info["signed"] else "unsigned"
    print(f"baton {info['path']}  [{info['format']}, {sig}]")
    print(f"  task {info['task']}  architecture {json.dumps(info['architecture'])}")
    print(f"  strategy {info['strategy']}  settings {json.dumps(info['strategy_settings'])}")
    print(f"  sites {' -> '.join(info['sites']) or '(none yet)'}  ({info['n_seen']} training samples)")
    print(f"  content sha256 {info['content_sha256']}")
    print(f"  tensors: {info['tensors']['model']} model, {len(info['tensors']['strategy'])} strategy")
    print("  ledger:")
    primary = _primary_metric(info["task"])
    for i, e in enumerate(info["ledger"]):
        what = {"start": f"start (init {e.get('init')})",
                "train": f"train  #{e.get('order')} {e.get('site')}: n={e.get('n_samples')} epochs={e.get('epochs')}",
                "evaluate": f"evaluate {e.get('site')} [{e.get('split')}{', NOT held out' if e.get('held_out') is False else ''}] "
                            f"after {','.join(e.get('after_sites', []))}: n={e.get('n_samples')}"
                }.get(e.get("kind"), str(e.get("kind")))
        syn = " SYNTHETIC" if e.get("synthetic") else ""
        print(f"   {i:>2}. {what}{syn}  {_fmt_metrics(e.get('metrics', {}), primary)}")
        print(f"       medzoo {e.get('medzoo_version')}  {e.get('finished') or e.get('created', '')}  "
              f"weights {e['weights_sha256'][:12]}  entry {e['hash'][:12]} <- {e['prev_hash'][:12]}")
        note = e.get("note") or {}
        if isinstance(note.get("generator"), dict) and "memorisation" in note["generator"]:
            mm = note["generator"]["memorisation"]
            print(f"       replay generator trained here; memorisation ratio {mm['ratio_median']:.2f} "
                  f"(gen->train {mm['gen_to_train_median']:.4f} vs train->train {mm['train_to_train_median']:.4f})")
        elif note.get("replay") == "off":
            print("       replay switched off at this site")
        if e.get("caveat"):
            print(f"       caveat: {e['caveat']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medzoo.cli.models import print_metrics
    from medzoo.relay import api

    with warnings.catch_warnings():  # the caveat is printed below, once
        warnings.simplefilter("ignore")
        res = api.evaluate(args.baton, args.data, args.site, out=args.out, split=args.split, key_file=args.key_file,
                           device=args.device, overwrite=args.overwrite)
    info = api.inspect(args.out or args.baton)
    last = info["ledger"][-1]
    tag = " (SYNTHETIC data)" if last.get("synthetic") else ""
    held = ", NOT held out" if last.get("held_out") is False else ""
    if last.get("caveat"):
        print(f"note: {args.data}: {last['caveat']}", file=sys.stderr)
    print(f"evaluation lap at {args.site} [{args.split}{held}] after {' -> '.join(info['sites'])}{tag}:")
    print_metrics(res.metrics)
    print(f"appended to the ledger of {args.out or args.baton}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from medzoo.relay import api

    r = api.verify(args.baton, key_file=args.key_file)
    sig = "signature OK" if r["signature_checked"] else "signed, signature NOT checked (no --key-file)" if r["signed"] else "unsigned"
    print(f"OK: {args.baton}: task {r['task']}, {r['entries']} ledger entries chained, content hash matches, {sig}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from medzoo.relay import api

    path = api.export(args.baton, args.out, key_file=args.key_file, half=args.half, overwrite=args.overwrite)
    print(f"wrote {path} (load with medzoo.core.load_model, or `medzoo predict {path} ...`)")
    return 0


def _int_list(text: str | None, option: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in _csv(text)]
    except ValueError:
        raise InputError(f"{option} expects comma-separated whole numbers, got {text!r}") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    from medzoo.relay.simulate import simulate

    from medzoo.relay.strategies import parse_strategy_opts

    try:
        sopts = parse_strategy_opts(args.opt or [])
    except ValueError as e:
        raise InputError(str(e)) from None
    strategies = "all" if args.strategy == "all" else _csv(args.strategy)
    if not strategies:
        raise InputError("--strategy names no strategy; give a comma list (see `medzoo relay strategies`) or 'all'")
    idle = sorted(set(sopts) - set(strategies if strategies != "all" else sopts))
    if idle:  # a typed --opt that would change nothing is a mistake worth saying
        raise InputError(f"--opt for {', '.join(idle)}, which this simulation does not run (--strategy {args.strategy})")
    baselines = args.baselines if args.baselines in ("all", "none") else _csv(args.baselines)
    res = simulate(args.task, _csv(args.sites), args.out, strategies=strategies, orders=args.orders, budget=args.budget,
                   external=_csv(args.external), baselines=baselines, seed=args.seed, device=args.device, init=args.init,
                   strategy_opts=sopts, progress=args.progress, epochs=args.epochs, max_train=args.max_train,
                   max_test=args.max_test, batch_size=args.batch_size, lr=args.lr, jobs=args.jobs,
                   norm_eval=args.norm_eval, lap_epochs=_int_list(args.lap_epochs, "--lap-epochs"), augment=args.augment)
    tag = "SYNTHETIC " if res.get("synthetic") else ""
    print(f"\nwrote {tag}results {args.out / 'relay_results.json'}, {args.out / 'relay_report.md'} and heatmaps "
          f"R_<strategy>.png ({res['wall_s']} s)")
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from medzoo.relay.strategies import _STRATEGIES, list_strategies, strategy_choices, strategy_defaults

    for name in list_strategies():
        doc = (_STRATEGIES[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:<7} {doc}" + ("  [the default]" if name == DEFAULT_STRATEGY else ""))
        accepts = strategy_choices(name)
        for k, v in strategy_defaults(name).items():
            value = str(v).lower() if isinstance(v, bool) else v
            print(f"          {k} = {value}".ljust(42) + f"  ({accepts[k]})")
    return 0
