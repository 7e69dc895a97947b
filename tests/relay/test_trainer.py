"""The loop's determinism: same seed, same weights, even when a dataset carries its own random generator."""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

from medzoo.errors import InputError
from medzoo.relay.trainer import TrainConfig, reseed_dataset, train_site


class AugmentedToy(Dataset):
    """Toy site whose augmentation is an albumentations pipeline (own RNG, not seeded by numpy/torch)."""

    def __init__(self, base: Dataset) -> None:
        self.base = base
        self.aug = A.Compose([A.HorizontalFlip(p=0.5), A.GaussNoise(std_range=(0.05, 0.2), p=1.0)])

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.base[i])
        img = item["image"].permute(1, 2, 0).numpy().astype(np.float32)
        item["image"] = torch.from_numpy(self.aug(image=img)["image"]).permute(2, 0, 1).contiguous()
        return item


def test_same_seed_same_weights_with_albumentations(toy) -> None:  # type: ignore[no-untyped-def]
    finals = []
    for _ in range(2):
        torch.manual_seed(0)
        net = toy.build_model()
        ds = Subset(AugmentedToy(toy.build_dataset("a", "train")), list(range(16)))
        train_site(toy, net, ds, TrainConfig(epochs=2, batch_size=8, lr=0.05, seed=1), progress=False)
        finals.append(net.state_dict())
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_reseed_dataset_reaches_nested_pipelines(toy) -> None:  # type: ignore[no-untyped-def]
    ds = Subset(AugmentedToy(toy.build_dataset("a", "train")), [0, 1, 2])
    reseed_dataset(ds, 7)
    first = [ds[i]["image"] for i in range(3)]
    reseed_dataset(ds, 7)
    assert all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))
    reseed_dataset(ds, 8)
    assert not all(torch.equal(a, ds[i]["image"]) for i, a in enumerate(first))


@pytest.mark.parametrize("bad", [{"lr": -1e-3}, {"lr": 0.0}, {"lr": float("nan")}, {"lr": float("inf")},
                                 {"epochs": 0}, {"epochs": 2.0}, {"batch_size": 0}, {"weight_decay": -0.1},
                                 {"min_lr_ratio": 1.5}, {"num_workers": -1}, {"grad_clip": -1.0}])
def test_settings_that_would_train_silently_wrong_are_refused(bad: dict[str, Any]) -> None:
    """A negative learning rate once trained without a word (gradient ascent: a baton of garbage weights)."""
    name = next(iter(bad))
    with pytest.raises(InputError, match=f"{name} must be"):
        TrainConfig(**bad)
    TrainConfig(lr=3e-4, epochs=1, batch_size=1, weight_decay=0.0, min_lr_ratio=1.0, grad_clip=1.0)  # in range
