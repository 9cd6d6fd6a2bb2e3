"""torchmetrics objects for the quality metrics, so they reduce correctly across processes.

Each value is a mean over clips; a clip that cannot be scored — silent clean reference,
failed PESQ — enters as NaN, is left out of the mean and is counted separately.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import Metric

from lightning_app.metrics import functional as MF

WAVEFORM_METRICS = ("si_sdr", "si_sdr_input", "si_sdr_i", "snr", "snr_input", "snr_i",
                    "amplitude_retention", "speech_removed", "spectral_correlation")
PERCEPTUAL_METRICS = ("pesq", "pesq_input", "pesq_i", "stoi", "stoi_input", "stoi_i")


def waveform_scores(estimate: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor,
                    silent_rms: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-clip scores; clips whose clean RMS is below ``silent_rms`` are NaN (±111 dB otherwise)."""
    silent = MF.rms(clean) < silent_rms
    scores = {
        "si_sdr": MF.si_sdr(estimate, clean).double(),
        "si_sdr_input": MF.si_sdr(noisy, clean).double(),
        "snr": MF.snr(estimate, clean),
        "snr_input": MF.snr(noisy, clean),
        "amplitude_retention": MF.amplitude_retention(estimate, clean),
        "speech_removed": MF.speech_removed(estimate, noisy, clean),
        "spectral_correlation": MF.spectral_correlation(estimate, clean),
    }
    scores["si_sdr_i"] = scores["si_sdr"] - scores["si_sdr_input"]
    scores["snr_i"] = scores["snr"] - scores["snr_input"]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=clean.device)
    return {k: torch.where(silent, nan, v) for k, v in scores.items()}, silent


class NanMean(Metric):
    """Mean of the finite values seen; NaN when there were none. Sum states reduce across ranks."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().to(torch.float64).reshape(-1)
        finite = torch.isfinite(values)
        self.total += values[finite].sum()
        self.count += finite.sum()

    def compute(self) -> torch.Tensor:
        return self.total / self.count if self.count > 0 else torch.tensor(float("nan"), dtype=torch.float64)


class Count(Metric):
    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, value) -> None:
        self.total += float(value)

    def compute(self) -> torch.Tensor:
        return self.total


class ClipMeans(nn.Module):
    """Named means over clips plus counters; ``compute`` syncs across ranks."""

    def __init__(self, names, counters=()):
        super().__init__()
        self.means = nn.ModuleDict({n: NanMean() for n in names})
        self.counts = nn.ModuleDict({n: Count() for n in counters})

    def update(self, scores: dict[str, torch.Tensor], counts: dict[str, float] | None = None) -> None:
        for name, values in scores.items():
            self.means[name].update(values)
        for name, value in (counts or {}).items():
            self.counts[name].update(value)

    def compute(self) -> dict[str, float]:
        # Every rank calls compute on every metric: each call is a collective under DDP.
        return {name: float(metric.compute()) for name, metric in [*self.means.items(), *self.counts.items()]}

    def reset(self) -> None:
        for metric in [*self.means.values(), *self.counts.values()]:
            metric.reset()
