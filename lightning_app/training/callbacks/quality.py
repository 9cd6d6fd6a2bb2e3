"""Quality metric callbacks shared by every variant.

WaveformQuality: every validation batch, SI-SDR/SNR of output and input and their gain,
amplitude retention, speech removed, spectral correlation, log-spectral distance.
PerceptualQuality: every N epochs (and after the last), on a fixed subset of validation clips,
wideband PESQ and STOI of the speech clips and ViSQOL (audio mode) of a smaller subset, scored
in CPU worker processes.
Both read the ``{"estimate": ...}`` that ``DenoiseSystem.validation_step`` returns. Given the
content names (``contents``), each metric is also logged per content as ``val/<metric>/<content>``
from the batch's ``"content"`` labels; a content with no clips that epoch is not logged.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_app.metrics.perceptual import score_clip, speech_content
from lightning_app.metrics.quality import (
    PERCEPTUAL_METRICS,
    RETENTION_LOUD,
    RETENTION_TARGET,
    WAVEFORM_METRICS,
    ContentMeans,
    waveform_scores,
)
from lightning_app.metrics.visqol import visqol_missing
from lightning_app.training.callbacks.console import epoch_label


def _prefix(trainer: L.Trainer) -> str:
    return "test" if trainer.state.fn == "test" else "val"


#: bookkeeping, logged under ``<prefix>_status/`` so that TensorBoard's ``val/`` group holds only quality
STATUS = (
    "clips",
    "silent_clips",
    "perceptual_clips",
    "speech_clips",
    "visqol_clips",
    "pesq_failures",
    "stoi_failures",
    "visqol_failures",
    "muting_alarm",
    "si_sdr_best",
)


def metric_tag(prefix: str, name: str) -> str:
    """``val/si_sdr_i/music`` for a quality value, ``val_status/clips/music`` for bookkeeping."""
    return f"{prefix}_status/{name}" if name.split("/")[0] in STATUS else f"{prefix}/{name}"


#: output-vs-input pairs (``<m>``, ``<m>_input``) also logged under names that say which is which,
#: ``<prefix>_compare/<m>_denoised`` and ``<prefix>_compare/<m>_noisy_input``: a custom-scalars chart has no
#: legend, its series are named by their tags
COMPARED = ("si_sdr", "pesq", "stoi", "visqol", "lsd")


def compare_tags(prefix: str, name: str) -> tuple[str, str]:
    """(denoised, noisy input) tags of one of ``COMPARED``."""
    return f"{prefix}_compare/{name}_denoised", f"{prefix}_compare/{name}_noisy_input"


def _log(pl_module, prefix: str, values: dict[str, float]) -> None:
    """Overall values as they are; per-content ones (``metric/content``) only when finite; the overall
    output-vs-input pairs once more under ``compare_tags``."""
    logged = {metric_tag(prefix, k): v for k, v in values.items() if "/" not in k or math.isfinite(v)}
    for name in COMPARED:
        if name in values and f"{name}_input" in values:
            denoised, noisy = compare_tags(prefix, name)
            logged[denoised], logged[noisy] = values[name], values[f"{name}_input"]
    pl_module.log_dict(logged, sync_dist=False)


class WaveformQuality(L.Callback):
    def __init__(
        self, silent_clean_rms: float = 1e-4, contents: tuple[str, ...] = (), sample_rate: int = 16000
    ):
        self.silent_clean_rms = silent_clean_rms
        self.sample_rate = sample_rate
        self.metrics = ContentMeans(
            WAVEFORM_METRICS,
            counters=("silent_clips", "clips"),
            contents=contents,
            content_counters=("clips",),
        )
        self.best_si_sdr = -math.inf
        self.last: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage):
        self.metrics.to(pl_module.device)

    def _batch_end(self, outputs, batch):
        scores, silent = waveform_scores(
            outputs["estimate"], batch["noisy"], batch["clean"], self.silent_clean_rms, self.sample_rate
        )
        self.metrics.update(
            scores, {"silent_clips": silent, "clips": torch.ones_like(silent)}, batch.get("content")
        )

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(outputs, batch)

    def _epoch_end(self, trainer, pl_module):
        values = self.metrics.compute()  # on every rank, every content: each compute is a collective
        self.metrics.reset()
        prefix = _prefix(trainer)
        _log(pl_module, prefix, values)
        if prefix == "val" and not trainer.sanity_checking and math.isfinite(values["si_sdr"]):
            self.best_si_sdr = max(self.best_si_sdr, values["si_sdr"])
            pl_module.log(metric_tag("val", "si_sdr_best"), self.best_si_sdr)
        self.last = values

    def on_validation_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def state_dict(self):
        return {"best_si_sdr": self.best_si_sdr}

    def load_state_dict(self, state_dict):
        self.best_si_sdr = state_dict["best_si_sdr"]


PERCEPTUAL_COUNTERS = (
    "perceptual_clips",
    "speech_clips",
    "visqol_clips",
    "pesq_failures",
    "stoi_failures",
    "visqol_failures",
)


class PerceptualQuality(L.Callback):
    """PESQ/STOI and ViSQOL off the hot path: fixed clips, every ``every_n_epochs``, in a process pool.

    PESQ/STOI score the speech clips (or unlabelled ones) among the first ``clips``; ViSQOL's audio
    mode scores the first ``visqol_clips`` of any content (about 2 s of CPU per 3-s clip and signal,
    hence a smaller subset; 0 turns it off). The validation set interleaves its contents, so a
    first-N subset holds each of them.
    """

    def __init__(
        self,
        sample_rate: int,
        every_n_epochs: int = 5,
        clips: int = 32,
        workers: int = 2,
        contents: tuple[str, ...] = (),
        visqol_clips: int = 8,
    ):
        self.sample_rate = sample_rate
        self.every_n_epochs = max(1, every_n_epochs)
        self.clips = clips
        self.visqol_clips = max(0, visqol_clips)
        self.workers = max(1, workers)
        self.contents = tuple(contents)
        self.metrics = ContentMeans(PERCEPTUAL_METRICS, counters=PERCEPTUAL_COUNTERS, contents=contents)
        self._pool: ProcessPoolExecutor | None = None
        self._pending = []  # (future or None, content, in the PESQ subset, PESQ/STOI asked, ViSQOL asked)
        self._explained = False

    def setup(self, trainer, pl_module, stage):
        self.metrics.to(pl_module.device)
        missing = visqol_missing() if self.visqol_clips else None
        if missing:
            rank_zero_warn(f"ViSQOL skipped: {missing}")
            self.visqol_clips = 0  # said once; nothing to count as failures

    def _due(self, trainer) -> bool:
        if trainer.sanity_checking:
            return False
        if trainer.state.fn in ("validate", "test"):
            return True
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return last or epoch % self.every_n_epochs == 0

    def _pool_or_start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a forked copy of a process holding torch threads and DataLoader workers can deadlock.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def _batch_end(self, trainer, outputs, batch):
        if not self._due(trainer):
            return
        index = batch["index"].reshape(-1).tolist()
        contents = batch.get("content") or [None] * len(index)
        chosen = [i for i, k in enumerate(index) if k < max(self.clips, self.visqol_clips)]
        if not chosen:
            return
        est = outputs["estimate"].float().cpu().numpy()
        noisy, clean = batch["noisy"].float().cpu().numpy(), batch["clean"].float().cpu().numpy()
        for i in chosen:
            in_subset = index[i] < self.clips
            speech = in_subset and speech_content(contents[i])
            visqol = index[i] < self.visqol_clips
            future = None
            if speech or visqol:
                future = self._pool_or_start().submit(
                    score_clip,
                    clean[i].reshape(-1),
                    noisy[i].reshape(-1),
                    est[i].reshape(-1),
                    self.sample_rate,
                    speech=speech,
                    visqol=visqol,
                )
            self._pending.append((future, contents[i], in_subset, speech, visqol))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(trainer, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(trainer, outputs, batch)

    def _epoch_end(self, trainer, pl_module):
        if not self._due(trainer):
            return
        pending, self._pending = self._pending, []
        results = [f.result() if f is not None else {} for f, *_ in pending]

        def column(values) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.float64)

        scores = {}
        for name in ("pesq", "stoi", "visqol"):
            out = column(r.get(name, math.nan) for r in results)
            inp = column(r.get(f"input_{name}", math.nan) for r in results)
            scores.update({name: out, f"{name}_input": inp, f"{name}_i": out - inp})
        counts = {
            "perceptual_clips": column(p[2] for p in pending),
            "speech_clips": column(p[3] for p in pending),
            "visqol_clips": column(p[4] for p in pending),
        }
        for name in ("pesq", "stoi", "visqol"):
            counts[f"{name}_failures"] = column(r.get(f"{name}_error") is not None for r in results)
        self.metrics.update(scores, counts, [p[1] for p in pending])
        values = self.metrics.compute()  # on every rank, every content: each compute is a collective
        self.metrics.reset()
        # A measure that ran on no clip at all (no speech in the set, ViSQOL off) is left out, not logged as
        # NaN.
        skipped = {
            n
            for n, c in (("pesq", "speech_clips"), ("stoi", "speech_clips"), ("visqol", "visqol_clips"))
            if values[c] == 0
        }
        _log(
            pl_module,
            _prefix(trainer),
            {k: v for k, v in values.items() if k.split("/")[0].split("_")[0] not in skipped},
        )
        if self.contents and not self._explained:
            self._explained = True
            rank_zero_info(
                f"PESQ/STOI: speech clips only ({int(values['speech_clips'])} of "
                f"{int(values['perceptual_clips'])} clips); ViSQOL audio mode (level-blind, read it with "
                f"amplitude retention): {int(values['visqol_clips'])} clips of every content"
            )
        for name in ("pesq", "visqol"):
            if values[f"{name}_failures"]:
                reasons = sorted({r[f"{name}_error"] for r in results if r.get(f"{name}_error")})
                rank_zero_warn(
                    f"{name.upper()} failed on {int(values[f'{name}_failures'])} clip(s), skipped: "
                    f"{'; '.join(reasons)[:300]}"
                )

    def on_validation_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def teardown(self, trainer, pl_module, stage):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = []


class OverSuppressionAlarm(L.Callback):
    """Warns, and logs ``val_status/muting_alarm`` = 1, when amplitude retention falls below a threshold,
    overall or for any one content (``val_status/muting_alarm/<content>`` says which); warns too when it is
    above ``RETENTION_LOUD`` (the output LOUDER than the reference: SI-SDR, scale-invariant, does not see it).

    The research's supervised U-Net reached a low loss while keeping ~10 % of the signal:
    this is the check that would have caught it on the first validation. Speech enhancers
    mute music while keeping speech, which an overall mean can hide: hence per content.
    Reads WaveformQuality's logged values, so it must come after it in the callback list.
    """

    def __init__(self, threshold: float = 0.5, contents: tuple[str, ...] = ()):
        self.threshold = threshold
        self.contents = tuple(contents)
        self.alarms = 0

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return

        def finite(key):
            value = trainer.callback_metrics.get(key)
            return float(value) if value is not None and math.isfinite(float(value)) else None

        overall = finite("val/amplitude_retention")
        per_content = {
            c: v for c in self.contents if (v := finite(f"val/amplitude_retention/{c}")) is not None
        }
        if overall is None and not per_content:
            return
        muted = [c for c, v in per_content.items() if v < self.threshold]
        muting = bool(muted) or (overall is not None and overall < self.threshold)
        pl_module.log(metric_tag("val", "muting_alarm"), float(muting))
        for content, value in per_content.items():
            pl_module.log(metric_tag("val", f"muting_alarm/{content}"), float(value < self.threshold))
        shown = ", ".join(f"{c} {v:.2f}" for c, v in per_content.items())
        level = f"{overall:.2f}" if overall is not None else "n/a"
        when = f"after {epoch_label(trainer.current_epoch, trainer.max_epochs)}"
        if muting:
            self.alarms += 1
            which = f" of {' and '.join(muted)}" if muted else ""
            rank_zero_warn(
                f"OVER-SUPPRESSION{which}: amplitude retention {level}{f' ({shown})' if shown else ''} < "
                f"{self.threshold} {when}: the model is muting the signal "
                "(output RMS / clean RMS). A low loss does not mean good audio; check the loss weights "
                "(system.supervised.energy, si_sdr) or use --mix."
            )
        loud = [c for c, v in per_content.items() if v > RETENTION_LOUD]
        if loud or (overall is not None and overall > RETENTION_LOUD):
            which = f" ({' and '.join(loud)})" if loud and len(per_content) > 1 else ""
            rank_zero_warn(
                f"LOUDER than the reference{which}: amplitude retention {level}"
                f"{f' ({shown})' if shown else ''} > {RETENTION_LOUD:g} {when} (target "
                f"{RETENTION_TARGET[0]:g}-{RETENTION_TARGET[1]:g}): the output is louder than the clean "
                "signal, which SI-SDR (scale-invariant) does not show. Check the level terms of the loss "
                "(system.supervised.energy, snr) and the mask limit (model.*.mask_max)."
            )
