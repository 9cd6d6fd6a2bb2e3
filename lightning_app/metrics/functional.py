"""Per-clip quality metrics on (batch, ..., samples) tensors; each returns (batch,) floats.

These are the research's measures of what a listener hears, next to the loss:
SI-SDR and SNR (in dB), amplitude retention (is the model muting?), speech removed
(did the removed part contain speech?) and spectral correlation.
"""

from __future__ import annotations

import torch

from lightning_app.losses import si_sdr  # noqa: F401  (one definition, shared with the loss)

EPS = 1e-8


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.double().reshape(x.shape[0], -1)


def snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 log10(|target|^2 / |target - estimate|^2) in dB (not scale invariant)."""
    est, ref = _flat(estimate), _flat(target)
    return 10 * torch.log10((ref.pow(2).sum(1) + EPS) / ((ref - est).pow(2).sum(1) + EPS))


def rms(x: torch.Tensor) -> torch.Tensor:
    return _flat(x).pow(2).mean(1).sqrt()


def amplitude_retention(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RMS(estimate) / RMS(clean). About 1 is right; the muting model of the research gave ~0.1."""
    return rms(estimate) / (rms(target) + EPS)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = _flat(a), _flat(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


def speech_removed(estimate: torch.Tensor, noisy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|corr(noisy - estimate, clean)|: 0 when only noise was removed, towards 1 when speech was."""
    return pearson(noisy - estimate, target).abs()


def spectral_correlation(estimate: torch.Tensor, target: torch.Tensor, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Pearson correlation of log-magnitude spectrograms."""
    window = torch.hann_window(n_fft, dtype=torch.float64, device=estimate.device)

    def logmag(x):
        return torch.stft(_flat(x), n_fft, hop, window=window, return_complex=True).abs().add(1e-6).log()

    return pearson(logmag(estimate), logmag(target))
