"""The signal measures that losses and metrics share: one definition of each, on (batch, ..., samples)
tensors.

Losses call them in float32 (SI-SDR and log-spectra lose too much in bf16, and float32 keeps the gradient
cheap); metrics call them in float64 where a clip's energy spans more than float32 can subtract.
"""

from __future__ import annotations

import torch

EPS = 1e-8


def flat(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, ..., samples) -> (batch, everything else) in ``dtype``."""
    return x.to(dtype).reshape(x.shape[0], -1)


def si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example scale-invariant SDR in dB, (batch,); float32, as the loss computes it."""
    est, ref = flat(estimate), flat(target)
    est = est - est.mean(dim=1, keepdim=True)
    ref = ref - ref.mean(dim=1, keepdim=True)
    scale = (est * ref).sum(1, keepdim=True) / (ref.pow(2).sum(1, keepdim=True) + EPS)
    proj = scale * ref
    return 10 * torch.log10((proj.pow(2).sum(1) + EPS) / ((est - proj).pow(2).sum(1) + EPS))


def snr(estimate: torch.Tensor, target: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """10 log10(|target|^2 / |target - estimate|^2) in dB, (batch,); not scale invariant."""
    est, ref = flat(estimate, dtype), flat(target, dtype)
    return 10 * torch.log10((ref.pow(2).sum(1) + EPS) / ((ref - est).pow(2).sum(1) + EPS))


def rms(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Root mean square per example, (batch,)."""
    return flat(x, dtype).pow(2).mean(1).sqrt()
