"""torchmetrics objects for the quality metrics, so they reduce correctly across processes.

Each value is a mean over clips; a clip that cannot be scored — silent clean reference,
failed PESQ — enters as NaN, is left out of the mean and is counted separately.
``ContentMeans`` keeps the same means per content (speech, music) next to the overall ones.
Gains (``*_i``) are output minus input, so positive is better — except ``lsd_i``, which is
input minus output (LSD is a distance): positive is better there too.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchmetrics import Metric

from lightning_app.metrics import functional as MF

WAVEFORM_METRICS = (
    "si_sdr",
    "si_sdr_input",
    "si_sdr_i",
    "snr",
    "snr_input",
    "snr_i",
    "amplitude_retention",
    "speech_removed",
    "spectral_correlation",
    "lsd",
    "lsd_input",
    "lsd_i",
    "worse_than_input",
)
PERCEPTUAL_METRICS = (
    "pesq",
    "pesq_input",
    "pesq_i",
    "stoi",
    "stoi_input",
    "stoi_i",
    "visqol",
    "visqol_input",
    "visqol_i",
)


#: plain words for ``speech_removed`` (reports and consoles show these; the metric keeps its name).
#: It is |corr(input - output, clean)|: a correlation, not a share of the signal removed.
SPEECH_REMOVED_LABEL = "removed-vs-clean corr"
SPEECH_REMOVED_MEANING = (
    "|correlation| between what was removed (input - output) and the clean signal: 0 = only noise was "
    "removed, 1 = what was removed is a scaled copy of the signal, however little of it; not the share of "
    "the signal removed (its square is the share of the removed energy that follows the clean signal)"
)

#: a clip counts as made worse than its input when its SI-SDR falls more than this many dB below the input's
#: (``worse_than_input``: per clip 1 or 0, so its mean is the share of clips made worse). A mean gain can hide
#: the few clips a model harms, and on real music those are the best-preserved recordings.
WORSE_THAN_INPUT_DB = 0.5

#: amplitude retention (RMS output / RMS clean): the target band, the muting alarm (the default of
#: ``metrics.retention_alarm``) and the level above which an output is flagged as louder than its reference
RETENTION_TARGET = (0.9, 1.1)
RETENTION_MUTING = 0.5
RETENTION_LOUD = 1.25


def retention_warning(value: float) -> str | None:
    """The alarm for an amplitude retention outside the safe range, or None: ``MUTING (x0.12 of the reference
    level)`` under RETENTION_MUTING, ``LOUDER than the reference (x3.85)`` over RETENTION_LOUD."""
    if value is None or not math.isfinite(value):
        return None
    if value < RETENTION_MUTING:
        return f"MUTING (x{value:.2f} of the reference level)"
    if value > RETENTION_LOUD:
        return f"LOUDER than the reference (x{value:.2f})"
    return None


def retention_words(value: float) -> str:
    """Plain words for any amplitude retention: the alarm of :func:`retention_warning`, else where it sits
    against the RETENTION_TARGET band (0.9-1.1)."""
    alarm = retention_warning(value)
    if alarm or value is None or not math.isfinite(value):
        return alarm or "not measured"
    low, high = RETENTION_TARGET
    if value < low:
        return f"quieter than the reference (x{value:.2f})"
    if value > high:
        return f"a little louder than the reference (x{value:.2f})"
    return f"level kept (x{value:.2f})"


def metric_contents(mode: str, mix: dict | None) -> tuple[str, ...]:
    """The content names the metrics are broken down by: ``data.clean.mix``'s keys of weight > 0 for the
    synthetic modes (real_pairs validates on synthetic clips too); none for paired folders (their clean
    side has no content label)."""
    if mode not in ("supervised", "noise2noise", "real_pairs") or not mix:
        return ()
    return tuple(name for name, weight in mix.items() if weight > 0)


def waveform_scores(
    estimate: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    silent_rms: float,
    sample_rate: int = 16000,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-clip scores; clips whose clean RMS is below ``silent_rms`` are NaN (±111 dB otherwise)."""
    silent = MF.rms(clean) < silent_rms
    n_fft = MF.lsd_fft_size(sample_rate)
    scores = {
        "si_sdr": MF.si_sdr(estimate, clean).double(),
        "si_sdr_input": MF.si_sdr(noisy, clean).double(),
        "snr": MF.snr(estimate, clean),
        "snr_input": MF.snr(noisy, clean),
        "amplitude_retention": MF.amplitude_retention(estimate, clean),
        "speech_removed": MF.speech_removed(estimate, noisy, clean),
        "spectral_correlation": MF.spectral_correlation(estimate, clean),
        "lsd": MF.log_spectral_distance(estimate, clean, n_fft),
        "lsd_input": MF.log_spectral_distance(noisy, clean, n_fft),
    }
    scores["si_sdr_i"] = scores["si_sdr"] - scores["si_sdr_input"]
    scores["snr_i"] = scores["snr"] - scores["snr_input"]
    scores["lsd_i"] = scores["lsd_input"] - scores["lsd"]
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=clean.device)
    worse = (scores["si_sdr_i"] < -WORSE_THAN_INPUT_DB).double()
    scores["worse_than_input"] = torch.where(scores["si_sdr_i"].isnan(), nan, worse)  # unscored: not counted
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


class ContentMeans(nn.Module):
    """ClipMeans overall and per content, named ``<metric>/<content>`` in ``compute``.

    The contents are fixed up front, never taken from batches: under DDP every rank must
    compute the same metrics (each compute is a collective), whichever clips it happened to see.
    ``content_counters`` are also kept per content.
    """

    def __init__(self, names, counters=(), contents=(), content_counters=()):
        super().__init__()
        self.overall = ClipMeans(names, counters)
        self.per_content = nn.ModuleDict({c: ClipMeans(names, content_counters) for c in contents})
        self.content_counters = tuple(content_counters)

    def update(
        self,
        scores: dict[str, torch.Tensor],
        counts: dict[str, torch.Tensor] | None = None,
        contents: list | None = None,
    ) -> None:
        """``scores`` and ``counts`` hold one value per clip; ``contents`` one label per clip (None: not
        labelled)."""
        counts = counts or {}
        self.overall.update(scores, {k: float(v.sum()) for k, v in counts.items()})
        if contents is None:
            contents = [None] * len(next(iter(scores.values()), ()))
        for content, means in self.per_content.items():
            mask = [
                c == content for c in contents
            ]  # updated even when empty: no compute-before-update warning
            means.update(
                {k: v[torch.tensor(mask, dtype=torch.bool, device=v.device)] for k, v in scores.items()},
                {
                    k: float(counts[k][torch.tensor(mask, dtype=torch.bool, device=counts[k].device)].sum())
                    for k in self.content_counters
                },
            )

    def compute(self) -> dict[str, float]:
        """Overall values, then ``<metric>/<content>`` for each content that had clips (all NaN and zero:
        none)."""
        values = self.overall.compute()
        for content, means in self.per_content.items():
            got = means.compute()
            if any(math.isfinite(v) and v != 0 for v in got.values()):
                values.update({f"{k}/{content}": v for k, v in got.items()})
        return values

    def reset(self) -> None:
        self.overall.reset()
        for means in self.per_content.values():
            means.reset()
