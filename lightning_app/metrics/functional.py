"""Per-clip quality metrics on (batch, ..., samples) tensors; each returns (batch,) floats.

These are the research's measures of what a listener hears, next to the loss:
SI-SDR and SNR (in dB), amplitude retention (is the model muting, or making it louder?), speech removed
(does what was removed follow the clean signal? reports call it "removed-vs-clean corr"), spectral
correlation and log-spectral distance.
"""

from __future__ import annotations

import math

import torch

# one definition of each, shared with the losses (si_sdr and snr are re-exported for the metrics)
from lightning_app.metrics.signal import EPS, flat, rms, si_sdr, snr  # noqa: F401


def _flat(x: torch.Tensor) -> torch.Tensor:
    """Metrics flatten in double precision."""
    return flat(x, torch.float64)


def amplitude_retention(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """RMS(estimate) / RMS(clean). About 1 is right; the muting model of the research gave ~0.1."""
    return rms(estimate) / (rms(target) + EPS)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = _flat(a), _flat(b)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


def speech_removed(estimate: torch.Tensor, noisy: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|corr(noisy - estimate, clean)|: the absolute Pearson correlation between what was removed and the
    clean signal. 0 when what was removed is unrelated to the signal (only noise removed); towards 1 when it
    follows the signal. It is not the share of the signal removed: taking away 10 % of the signal and none of
    the noise reads 1. Its square is the share of the removed part's energy that a scaled copy of the clean
    signal accounts for. Reports show it as "removed-vs-clean corr"
    (:data:`lightning_app.metrics.quality.SPEECH_REMOVED_MEANING`)."""
    return pearson(noisy - estimate, target).abs()


def spectral_correlation(
    estimate: torch.Tensor, target: torch.Tensor, n_fft: int = 512, hop: int = 128
) -> torch.Tensor:
    """Pearson correlation of log-magnitude spectrograms."""
    window = torch.hann_window(n_fft, dtype=torch.float64, device=estimate.device)

    def logmag(x):
        return torch.stft(_flat(x), n_fft, hop, window=window, return_complex=True).abs().add(1e-6).log()

    return pearson(logmag(estimate), logmag(target))


def lsd_fft_size(sample_rate: int) -> int:
    """The power of two covering 32 ms: 512 points at 16 kHz, 2048 at 44.1/48 kHz (the same time
    resolution)."""
    return 1 << math.ceil(math.log2(0.032 * sample_rate))


def log_spectral_distance(
    estimate: torch.Tensor,
    target: torch.Tensor,
    n_fft: int = 512,
    hop: int | None = None,
    dynamic_range_db: float = 80.0,
) -> torch.Tensor:
    """LSD in dB: per frame the RMS over frequency of 10 log10 P_target - 10 log10 P_estimate, then the mean
    over frames. P is the power of a Hann-window STFT (centred, reflect-padded). Both are floored
    ``dynamic_range_db`` below the target clip's loudest bin, so silent bins count as that rather than -inf
    and a gain applied to both leaves the distance unchanged. 0 is identical; lower is better; a gain applied
    to the estimate alone counts (-6 dB everywhere is an LSD of 6)."""
    hop = hop or n_fft // 4
    window = torch.hann_window(n_fft, dtype=torch.float64, device=estimate.device)

    def power(x):
        return torch.stft(_flat(x), n_fft, hop, window=window, return_complex=True).abs().pow(2)

    p_target, p_estimate = power(target), power(estimate)
    floor = (
        p_target.amax((1, 2), keepdim=True) * 10 ** (-dynamic_range_db / 10) + 1e-30
    )  # 1e-30: all-zero target
    diff = 10 * (
        torch.maximum(p_target, floor).log10() - torch.maximum(p_estimate, floor).log10()
    )  # (batch, freq, frames)
    return diff.pow(2).mean(1).sqrt().mean(1)
