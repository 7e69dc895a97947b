"""Several processes at one site: the trainer's DistributedDataParallel path, on CPU with gloo, 2 processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from toy_task import toy_task

    from medzoo.relay.strategies import make_strategy
    from medzoo.relay.trainer import TrainConfig, train_site

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        task = toy_task()
        torch.manual_seed(0)
        net = task.build_model()
        train_site(task, net, task.build_dataset("a", "train"), TrainConfig(epochs=2, batch_size=4, lr=0.05, seed=0),
                   hooks=[make_strategy("ewc", max_batches=1)], progress=False, checkpoint_dir=out_dir)
        torch.save({k: v.clone() for k, v in net.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_two_processes_gloo(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    s0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    torch.manual_seed(0)
    init = toy.build_model().state_dict()
    params = [k for k in s0 if "running" not in k and "num_batches" not in k]
    assert all(torch.allclose(s0[k], s1[k]) for k in params)  # gradients were all-reduced: replicas agree
    assert any(not torch.equal(s0[k], init[k]) for k in params)  # and they trained
    assert (tmp_path / "checkpoint.pt").is_file()  # only rank 0 writes checkpoints
