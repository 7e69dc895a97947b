"""A tiny task implementing the medzoo Task protocol, for relay tests that must not depend on real tasks.

Two classes (a bright blob in the left or right half of a 16x16 colour image), four sites that differ by
colour cast, brightness and noise. The network is a 3-layer conv net with a BatchNorm (so merges touch
buffers too). Registered as ``"toy-relay"`` by :func:`toy_task`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from medzoo.core import EvalResult, StepOutput, TaskModel, TaskSpec

NAME = "toy-relay"
SIZE = 16
_SITES = {"a": (0, (1.0, 0.3, 0.3), 0.05), "b": (1, (0.3, 1.0, 0.3), 0.10),
          "c": (2, (0.3, 0.3, 1.0), 0.15), "d": (3, (1.0, 1.0, 0.3), 0.10)}


class ToyDataset(Dataset):
    def __init__(self, site: str, split: str, n: int | None = None) -> None:
        idx, colour, noise = _SITES[site]
        n = n or (24 if split == "train" else 12)
        g = torch.Generator().manual_seed(1000 * idx + (0 if split == "train" else 500) + 7)
        self.items = []
        col = torch.tensor(colour)[:, None, None]
        for i in range(n):
            label = int(torch.randint(2, (1,), generator=g))
            img = torch.full((3, SIZE, SIZE), 0.2) * col
            y0 = int(torch.randint(2, SIZE - 7, (1,), generator=g))
            x0 = int(torch.randint(1, SIZE // 2 - 5, (1,), generator=g)) + (SIZE // 2 if label else 0)
            img[:, y0:y0 + 5, x0:x0 + 4] = 0.9 * col
            img = (img + noise * torch.randn(img.shape, generator=g)).clamp(0, 1)
            self.items.append({"image": img, "target": torch.tensor(label), "id": f"{site}-{split}-{i:03d}"})
        self.ids = [str(it["id"]) for it in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.items[i])


class ToyNet(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(4 * width, 2)
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn(self.c1(x)))
        h = F.relu(self.c2(h))
        return self.fc(self.pool(h).flatten(1))


class ToyTask:
    spec = TaskSpec(name=NAME, family="toy", target_kind="label", num_outputs=2, in_chans=3,
                    input_size=(SIZE, SIZE), primary_metric="accuracy", classes=("left", "right"), synthetic=True)

    def build_model(self, *, weights: str | Path | None = None, width: int = 8, norm_eval: str = "running") -> nn.Module:
        from medzoo.norm import set_norm_eval

        if weights is not None:
            from medzoo.core import load_state_dict_strict, read_model_file

            _, arch, _, state = read_model_file(weights)
            net = self.build_model(**arch)
            load_state_dict_strict(net, state, source=str(weights))
            return net
        net = ToyNet(width)
        set_norm_eval(net, norm_eval)
        return net

    def architecture(self, model: nn.Module) -> dict[str, Any]:
        from medzoo.norm import norm_eval_of

        mode = norm_eval_of(model)
        return {"width": model.width, **({"norm_eval": mode} if mode != "running" else {})}  # type: ignore[union-attr]

    def builtin_sites(self) -> tuple[str, ...]:
        return tuple(_SITES)

    def build_dataset(self, source: str | Path, split: str, *, augment: bool = False) -> Dataset:
        from medzoo.errors import InputError

        if str(source) not in _SITES:
            raise InputError(f"unknown toy site {source!r}")
        if split == "all":
            raise InputError("toy task has no 'all' split")
        return ToyDataset(str(source), split)

    def step(self, model: nn.Module, batch: Mapping[str, Any]) -> StepOutput:
        logits = model(batch["image"])
        return StepOutput(F.cross_entropy(logits.float(), batch["target"].long()), logits, batch["target"])

    def distill_loss(self, student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
        t = 2.0
        return F.kl_div(F.log_softmax(student_logits.float() / t, 1), F.softmax(teacher_logits.float() / t, 1),
                        reduction="batchmean") * t * t

    @torch.no_grad()
    def evaluate(self, model: nn.Module, dataset: Dataset, *, device: str | torch.device = "cpu") -> EvalResult:
        model.eval().to(device)
        correct, ids = [], []
        for i in range(len(dataset)):  # type: ignore[arg-type]
            item = dataset[i]
            pred = int(model(item["image"][None].to(device)).argmax(1))
            correct.append(float(pred == int(item["target"])))
            ids.append(item["id"])
        return EvalResult({"accuracy": sum(correct) / len(correct)}, {"accuracy": correct}, tuple(ids))

    def perturb_batch(self, batch: Mapping[str, Any], *, seed: int) -> dict[str, Any]:
        """Another site's look: a random colour cast and noise (for LwF's ``distill_inputs="perturbed"``)."""
        g = torch.Generator().manual_seed(seed)
        img = batch["image"]
        cast = 0.6 + 0.8 * torch.rand(img.shape[0], img.shape[1], 1, 1, generator=g)
        noise = 0.1 * torch.randn(img.shape, generator=g)
        return {**batch, "image": (img * cast.to(img) + noise.to(img)).clamp(0, 1)}

    def replay_pack(self, batch: Mapping[str, Any], size: int) -> Tensor:
        img = F.interpolate(batch["image"].float(), size=(size, size), mode="bilinear", align_corners=False)
        onehot = F.one_hot(batch["target"].long(), 2).float()[:, :, None, None].expand(-1, -1, size, size)
        return torch.cat([img, onehot.to(img.device)], 1).clamp(0, 1)

    def replay_unpack(self, x: Tensor) -> dict[str, Any]:
        img = F.interpolate(x[:, :3], size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        target = x[:, 3:].mean((2, 3)).argmax(1)
        return {"image": img, "target": target, "id": [f"replay-{i}" for i in range(len(x))]}

    def wrap(self, model: nn.Module, meta: Mapping[str, Any] | None = None) -> TaskModel:
        return TaskModel(self, model, meta)  # type: ignore[arg-type]

    def predict_files(self, model: TaskModel, paths: Sequence[Path], out_dir: Path, **options: Any) -> list[Path]:
        raise NotImplementedError


def toy_task() -> ToyTask:
    """Register (once) and return the toy task."""
    import medzoo

    if NAME not in medzoo.list_tasks():
        medzoo.register_task(NAME)(ToyTask)
    return medzoo.get_task(NAME)  # type: ignore[return-value]
