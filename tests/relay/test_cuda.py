"""The relay's CUDA paths: mixed-precision training with every strategy, a baton trained on a GPU read back on the
CPU, resume on the GPU, and DistributedDataParallel with NCCL. CI has no GPU, so these skip there; they run
wherever one is (docs/relay.md says where they last ran)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from medzoo.relay import api
from medzoo.relay.baton import Baton

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI machines have none)")


@pytest.mark.parametrize("strategy,opts", [("naive", {}), ("ewc", {}), ("lwf", {}), ("mas", {}),
                                           ("relay", {"gen_epochs": 2, "gen_size": 16})])
def test_amp_relay_on_cuda_gives_a_cpu_readable_baton(toy, tmp_path: Path, strategy: str, opts: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy=strategy, **opts)
    b1 = api.train(b0, "a", "a", tmp_path / "1.baton", epochs=2, lr=0.01, device="cuda", amp=True, progress=False)
    b2 = api.train(b1, "b", "b", tmp_path / "2.baton", epochs=2, lr=0.01, device="cuda", amp=True, progress=False)
    s0, s2 = Baton.read(b0), Baton.read(b2)  # type: ignore[arg-type]
    assert all(v.device.type == "cpu" for v in s2.model_state.values())  # stored from the GPU, read on the CPU
    assert all(torch.isfinite(v).all() for v in s2.model_state.values() if v.is_floating_point())
    assert all(v.dtype == s0.model_state[k].dtype for k, v in s2.model_state.items())  # autocast left fp32 weights
    assert s2.weights_sha256 != s0.weights_sha256
    losses = [e["train_stats"]["loss"] for e in s2.ledger if e.get("kind") == "train"]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(x)) for x in losses)
    assert all(e["train_config"]["amp"] for e in s2.ledger if e.get("kind") == "train")
    # the model it holds scores on the CPU the same as on the GPU (up to float rounding)
    from medzoo import get_task

    _, net, _ = api._build(s2)
    cpu = get_task(toy.spec.name).evaluate(net, toy.build_dataset("a", "test"), device="cpu")
    gpu = get_task(toy.spec.name).evaluate(net, toy.build_dataset("a", "test"), device="cuda")
    key = toy.spec.primary_metric
    assert abs(cpu.metrics[key] - gpu.metrics[key]) < 1e-3


def test_resume_on_cuda_matches_uninterrupted_run(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Kill and resume on the GPU: the same weights as an uninterrupted run, to float tolerance (cuDNN may pick
    non-deterministic kernels, so bit-identity is promised on the CPU only)."""
    b0 = api.start(toy.spec.name, tmp_path / "0.baton", strategy="lwf")
    kw = dict(epochs=4, lr=0.01, seed=3, progress=False, device="cuda")
    full = Baton.read(api.train(b0, "a", "a", tmp_path / "full.baton", **kw))  # type: ignore[arg-type]
    out = tmp_path / "resumed.baton"
    assert api.train(b0, "a", "a", out, _stop_after_epochs=2, **kw) is None  # type: ignore[arg-type]
    res = Baton.read(api.train(b0, "a", "a", out, **kw))  # type: ignore[arg-type]
    assert res.ledger[-1]["train_config"]["resumed_from_epoch"] == 2
    assert all(torch.allclose(full.model_state[k].float(), res.model_state[k].float(), atol=1e-4, rtol=1e-3)
               for k in full.model_state)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toy_task import toy_task

    from medzoo.relay.strategies import make_strategy
    from medzoo.relay.trainer import TrainConfig, train_site

    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.cuda.set_device(rank)
        task = toy_task()
        torch.manual_seed(0)
        net = task.build_model()
        train_site(task, net, task.build_dataset("a", "train"), TrainConfig(epochs=2, batch_size=4, lr=0.05, seed=0),
                   hooks=[make_strategy("lwf")], device=f"cuda:{rank}", progress=False, checkpoint_dir=out_dir)
        torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_nccl_on_every_gpu(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One process per GPU (one GPU is enough to run the NCCL path; with several, the replicas must agree)."""
    import torch.multiprocessing as mp

    world = torch.cuda.device_count()
    mp.spawn(_ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]
    torch.manual_seed(0)
    init = toy.build_model().state_dict()
    params = [k for k in states[0] if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(states[0][k], s[k]) for s in states[1:] for k in params)
    assert any(not torch.equal(states[0][k], init[k]) for k in params)
    assert (tmp_path / "checkpoint.pt").is_file()
