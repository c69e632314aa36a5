"""RQ-VAE: residual-quantised autoencoder over item embeddings (Lee et al. 2022; TIGER, Rajput et al. 2023).

Loss (TIGER Eq. 1): ||x - x_hat||^2 + sum_l ( ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2 ),
with r_0 = E(x), e_l the nearest code of codebook l to r_l, r_{l+1} = r_l - e_l and x_hat = D(sum_l e_l)
through the straight-through estimator. Against the codebook collapse that published re-implementations
report (LC-Rec #23, RQ-VAE-Recommender #15/#47): codebooks start from k-means of the first residuals, and
codes unused over an epoch restart on current residuals (Dhariwal et al. 2020, Jukebox Sec. 3.3), and a
few final restart rounds after training leave no code without an item. `sinkhorn_last` balances the last
level (LC-Rec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from llmrec.hardware import deterministic_torch
from llmrec.indexing.quantize import kmeans_codebook, sinkhorn_assign


@dataclass
class RQVAESettings:
    levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden_dims: tuple[int, ...] = (512, 256, 128)
    beta: float = 0.25
    epochs: int = 500
    batch_size: int = 1024
    lr: float = 1e-3
    sinkhorn_last: bool = False
    dead_code_restarts: bool = True  # off only to measure what they buy (bench/bench_index.py)
    seed: int = 0


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, input_dim: int, s: RQVAESettings):
        super().__init__()
        self.settings = s
        self.encoder = _mlp([input_dim, *s.hidden_dims, s.latent_dim])
        self.decoder = _mlp([s.latent_dim, *reversed(s.hidden_dims), input_dim])
        self.codebooks = nn.Parameter(torch.randn(s.levels, s.codebook_size, s.latent_dim) * 0.01)  # (L, K, e)

    def quantize(self, z: torch.Tensor, balanced_last: bool = False) -> tuple[torch.Tensor, torch.Tensor, list]:
        """(B, e) latents -> codes (B, L), quantised latents (B, e), residuals per level [(B, e)] * L."""
        residual, codes, residuals = z, [], []
        z_q = torch.zeros_like(z)
        for level in range(self.settings.levels):
            book = self.codebooks[level]  # (K, e)
            dist = torch.cdist(residual.detach(), book.detach()) ** 2  # (B, K)
            last = level == self.settings.levels - 1
            code = sinkhorn_assign(dist) if (balanced_last and last) else dist.argmin(dim=1)  # (B,)
            residuals.append(residual)
            codes.append(code)
            z_q = z_q + book[code]
            residual = residual - book[code]
        return torch.stack(codes, dim=1), z_q, residuals

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D) -> loss, reconstruction loss, codes (B, L)."""
        z = self.encoder(x)  # (B, e)
        codes, _, residuals = self.quantize(z, self.settings.sinkhorn_last)
        vq_loss = torch.zeros((), device=x.device)
        quantized = torch.zeros_like(z)
        for level, r in enumerate(residuals):
            e = self.codebooks[level][codes[:, level]]  # (B, e)
            vq_loss = vq_loss + ((r.detach() - e) ** 2).mean() + self.settings.beta * ((r - e.detach()) ** 2).mean()
            quantized = quantized + e
        z_q = z + (quantized - z).detach()  # straight-through: gradients flow to the encoder as if identity
        recon = ((self.decoder(z_q) - x) ** 2).mean()
        return recon + vq_loss, recon, codes

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) codes -> (B, D) reconstructed embeddings: what the codes alone say about an item."""
        z_q = sum(self.codebooks[level][codes[:, level]] for level in range(self.settings.levels))  # (B, e)
        return self.decoder(z_q)

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor) -> None:
        residual = self.encoder(x)
        for level in range(self.settings.levels):
            book = torch.from_numpy(kmeans_codebook(residual.numpy(), self.settings.codebook_size, self.settings.seed))
            self.codebooks[level] = book
            code = (torch.cdist(residual, book) ** 2).argmin(dim=1)
            residual = residual - book[code]

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor, used: torch.Tensor, gen: torch.Generator) -> int:
        """Move codes unused this epoch (used: (L, K) bool) onto residuals of the same level, drawn with
        probability proportional to their squared quantisation error (k-means++ seeding, Arthur and
        Vassilvitskii 2007), so restarted codes go where the codebook fits worst and items collide most."""
        codes, _, residuals = self.quantize(self.encoder(x))
        restarted = 0
        for level, r in enumerate(residuals):
            dead = (~used[level]).nonzero().flatten()
            if not len(dead):
                continue
            error = ((r - self.codebooks[level][codes[:, level]]) ** 2).sum(1) + 1e-12  # (B,)
            pick = torch.multinomial(error, len(dead), replacement=len(dead) > len(r), generator=gen)
            self.codebooks[level, dead] = r[pick]
            restarted += len(dead)
        return restarted


def train_rqvae(x: np.ndarray, s: RQVAESettings, log_every: int = 0) -> tuple[RQVAE, np.ndarray, float]:
    """Fit an RQ-VAE on (N, D) embeddings; returns the model, codes (N, L) and the final reconstruction MSE.
    The same settings and embeddings give the same codes on every run (deterministic kernels)."""
    with deterministic_torch():
        return _train_rqvae(x, s, log_every)


def _train_rqvae(x: np.ndarray, s: RQVAESettings, log_every: int) -> tuple[RQVAE, np.ndarray, float]:
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    data = torch.from_numpy(x.astype(np.float32))  # (N, D)
    model = RQVAE(data.shape[1], s)
    model.init_codebooks(data[torch.randperm(len(data), generator=gen)[: max(s.batch_size, 20 * s.codebook_size)]])
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr)
    for epoch in range(s.epochs):
        used = torch.zeros(s.levels, s.codebook_size, dtype=torch.bool)
        for idx in torch.randperm(len(data), generator=gen).split(s.batch_size):
            loss, recon, codes = model(data[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            for level in range(s.levels):
                used[level, codes[:, level]] = True
        if s.dead_code_restarts:
            model.restart_dead_codes(data[torch.randperm(len(data), generator=gen)[:8192]], used, gen)
        if log_every and (epoch + 1) % log_every == 0:
            print(f"rqvae epoch {epoch + 1}/{s.epochs}: loss {loss.item():.5f} recon {recon.item():.5f}", flush=True)
    model.eval()
    codes = _assign(model, data)
    # Final restarts without training, so that every code ends up owning at least one item.
    for _ in range(3 if s.dead_code_restarts else 0):
        used = torch.zeros(s.levels, s.codebook_size, dtype=torch.bool)
        for level in range(s.levels):
            used[level, codes[:, level]] = True
        if used.all():
            break
        model.restart_dead_codes(data[torch.randperm(len(data), generator=gen)[:65536]], used, gen)
        codes = _assign(model, data)
    with torch.no_grad():
        errors = [((model.decode_codes(c) - b) ** 2).mean(1) for b, c in zip(data.split(65536), codes.split(65536))]
    recon = float(torch.cat(errors).mean())
    return model, codes.numpy().astype(np.int64), recon


@torch.no_grad()
def _assign(model: RQVAE, data: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, L) codes, in chunks so a million-item catalog fits in memory."""
    return torch.cat([model.quantize(model.encoder(b), model.settings.sinkhorn_last)[0] for b in data.split(65536)])
