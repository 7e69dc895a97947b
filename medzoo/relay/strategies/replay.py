"""The replay generator: a small site-conditioned VAE over ``task.replay_pack`` tensors, and its privacy check.

Relay Learning (Bo et al. 2023) replays image-label pairs drawn from a generator that travels in the baton and
is trained at every site. StyleGAN2-ADA is out of reach on a CPU, so medzoo uses a conditional VAE at 64 px: the
condition is the site's index in the relay; the input is the task's packed image + target tensor in [0, 1].

A generator can memorise patients. :func:`nearest_neighbour_report` measures, for generated samples, the RMS
distance to the closest training sample of the same site, next to the same distance between distinct training
samples; a ratio well below 1 means the generator reproduces training images. Sites can switch replay off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConditionalVAE(nn.Module):
    """Conditional VAE for ``(B, channels, size, size)`` tensors in [0, 1]; ``size`` a multiple of 16.

    Args:
        channels: packed channels (image + target).
        size: side length (64 by default).
        latent: latent dimension.
        max_sites: number of site conditions (one-hot).
        width: base width of the conv stacks.

    Shape:
        forward: x (B, C, S, S), site (B,) long -> (recon (B, C, S, S), mu (B, L), logvar (B, L)).

    Example:
        >>> vae = ConditionalVAE(4, size=32)
        >>> vae.sample(torch.tensor([0, 1])).shape
        torch.Size([2, 4, 32, 32])
    """

    def __init__(self, channels: int, size: int = 64, latent: int = 32, max_sites: int = 8, width: int = 16) -> None:
        super().__init__()
        if size % 16:
            raise ValueError(f"size must be a multiple of 16, got {size}")
        self.channels, self.size, self.latent, self.max_sites, self.width = channels, size, latent, max_sites, width
        w = width
        self.enc = nn.Sequential(
            nn.Conv2d(channels + max_sites, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),
        )
        s = size // 16
        self.fc_mu = nn.Linear(4 * w * s * s, latent)
        self.fc_logvar = nn.Linear(4 * w * s * s, latent)
        self.fc_dec = nn.Linear(latent + max_sites, 4 * w * s * s)
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, channels, 4, 2, 1),
        )

    def config(self) -> Tensor:
        """The architecture as a small int tensor (stored in the baton beside the weights)."""
        return torch.tensor([self.channels, self.size, self.latent, self.max_sites, self.width])

    @classmethod
    def from_config(cls, cfg: Tensor) -> ConditionalVAE:
        c, s, latent, m, w = (int(v) for v in cfg.tolist())
        return cls(c, size=s, latent=latent, max_sites=m, width=w)

    def _onehot(self, site: Tensor) -> Tensor:
        return F.one_hot(site.long(), self.max_sites).float()

    def decode(self, z: Tensor, site: Tensor) -> Tensor:
        s = self.size // 16
        h = self.fc_dec(torch.cat([z, self._onehot(site).to(z.device)], 1)).view(-1, 4 * self.width, s, s)
        return self.dec(h)  # logits

    def forward(self, x: Tensor, site: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cond = self._onehot(site).to(x.device)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = self.enc(torch.cat([x, cond], 1)).flatten(1)
        mu, logvar = self.fc_mu(h), self.fc_logvar(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z, site), mu, logvar

    @torch.no_grad()
    def sample(self, site: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw one sample per entry of ``site`` (values in [0, 1])."""
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        z = torch.randn(len(site), self.latent, generator=generator).to(dev)
        out = torch.sigmoid(self.decode(z, site.to(dev)))
        self.train(was)
        return out


def vae_loss(recon_logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, beta: float = 1.0) -> Tensor:
    """Per-sample BCE reconstruction (summed over pixels) plus ``beta`` * KL to N(0, I), averaged over the batch."""
    rec = F.binary_cross_entropy_with_logits(recon_logits, x, reduction="sum") / x.shape[0]
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / x.shape[0]
    return rec + beta * kl


def fit_generator(gen: ConditionalVAE, packs: Tensor, site_index: int, *, learned_sites: list[int],
                  epochs: int = 30, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                  device: torch.device | str = "cpu") -> float:
    """Train ``gen`` on one site's packs (condition ``site_index``), replaying its own samples of
    ``learned_sites`` (generative replay of the generator itself) so it keeps earlier sites. Returns the last
    epoch's mean loss."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    gen.to(dev).train()
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    x_all = packs.float().clamp(0, 1)
    s_all = torch.full((len(x_all),), site_index, dtype=torch.long)
    if learned_sites:  # as many replayed samples as real ones, spread over the earlier sites
        cond = torch.tensor(learned_sites)[torch.randint(len(learned_sites), (len(x_all),), generator=g)]
        x_all = torch.cat([x_all, gen.sample(cond, generator=g).cpu()])
        s_all = torch.cat([s_all, cond])
    last = float("nan")
    for _ in range(epochs):
        perm = torch.randperm(len(x_all), generator=g)
        tot, n = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:
                continue
            x, s = x_all[idx].to(dev), s_all[idx].to(dev)
            recon, mu, logvar = gen(x, s)
            loss = vae_loss(recon, x, mu, logvar)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        last = tot / max(1, n)
    gen.eval()
    return last


def nearest_neighbour_report(generated: Tensor, train: Tensor) -> dict[str, Any]:
    """Memorisation measure: RMS per-pixel distance of each generated sample to its nearest training sample,
    next to each training sample's distance to its nearest *other* training sample.

    Returns:
        ``{"n_generated", "n_train", "gen_to_train_min", "gen_to_train_median", "train_to_train_median",
        "ratio_median"}``; ``ratio_median`` = gen_to_train_median / train_to_train_median (well below 1 suggests
        memorised training images).
    """
    a = generated.flatten(1).float().cpu()
    b = train.flatten(1).float().cpu()
    d = a.shape[1]
    g2t = torch.cdist(a, b).min(1).values / d**0.5
    if len(b) > 1:
        tt = torch.cdist(b, b)
        tt.fill_diagonal_(float("inf"))
        t2t = tt.min(1).values / d**0.5
        t2t_med = float(t2t.median())
    else:
        t2t_med = float("nan")
    g_med = float(g2t.median())
    return {"n_generated": len(a), "n_train": len(b), "gen_to_train_min": float(g2t.min()),
            "gen_to_train_median": g_med, "train_to_train_median": t2t_med,
            "ratio_median": g_med / t2t_med if t2t_med and t2t_med == t2t_med else float("nan")}
