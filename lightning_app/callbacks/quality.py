"""Quality metric callbacks shared by every variant.

WaveformQuality: every validation batch, SI-SDR/SNR of output and input and their gain,
amplitude retention, speech removed, spectral correlation.
PerceptualQuality: every N epochs (and after the last), wideband PESQ and STOI of a fixed
subset of validation clips, scored in CPU worker processes.
Both read the ``{"estimate": ...}`` that ``DenoiseSystem.validation_step`` returns.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_app.metrics.perceptual import score_clip
from lightning_app.metrics.quality import PERCEPTUAL_METRICS, WAVEFORM_METRICS, ClipMeans, waveform_scores


def _prefix(trainer: L.Trainer) -> str:
    return "test" if trainer.state.fn == "test" else "val"


class WaveformQuality(L.Callback):
    def __init__(self, silent_clean_rms: float = 1e-4):
        self.silent_clean_rms = silent_clean_rms
        self.metrics = ClipMeans(WAVEFORM_METRICS, counters=("silent_clips", "clips"))
        self.best_si_sdr = -math.inf
        self.last: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage):
        self.metrics.to(pl_module.device)

    def _batch_end(self, outputs, batch):
        scores, silent = waveform_scores(outputs["estimate"], batch["noisy"], batch["clean"], self.silent_clean_rms)
        self.metrics.update(scores, {"silent_clips": int(silent.sum()), "clips": len(silent)})

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(outputs, batch)

    def _epoch_end(self, trainer, pl_module):
        values = self.metrics.compute()
        self.metrics.reset()
        prefix = _prefix(trainer)
        pl_module.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        if prefix == "val" and not trainer.sanity_checking and math.isfinite(values["si_sdr"]):
            self.best_si_sdr = max(self.best_si_sdr, values["si_sdr"])
            pl_module.log("val/si_sdr_best", self.best_si_sdr)
        self.last = values

    def on_validation_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def state_dict(self):
        return {"best_si_sdr": self.best_si_sdr}

    def load_state_dict(self, state_dict):
        self.best_si_sdr = state_dict["best_si_sdr"]


class PerceptualQuality(L.Callback):
    """PESQ/STOI off the hot path: a fixed clip subset, every ``every_n_epochs``, in a process pool."""

    def __init__(self, sample_rate: int, every_n_epochs: int = 5, clips: int = 32, workers: int = 2):
        self.sample_rate = sample_rate
        self.every_n_epochs = max(1, every_n_epochs)
        self.clips = clips
        self.workers = max(1, workers)
        self.metrics = ClipMeans(PERCEPTUAL_METRICS, counters=("pesq_failures", "stoi_failures"))
        self._pool: ProcessPoolExecutor | None = None
        self._futures = []

    def setup(self, trainer, pl_module, stage):
        self.metrics.to(pl_module.device)

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
        index = batch["index"].reshape(-1)
        chosen = (index < self.clips).nonzero().reshape(-1).tolist()
        if not chosen:
            return
        pool = self._pool_or_start()
        est = outputs["estimate"].float().cpu().numpy()
        noisy, clean = batch["noisy"].float().cpu().numpy(), batch["clean"].float().cpu().numpy()
        for i in chosen:
            self._futures.append(pool.submit(score_clip, clean[i].reshape(-1), noisy[i].reshape(-1),
                                             est[i].reshape(-1), self.sample_rate))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(trainer, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(trainer, outputs, batch)

    def _epoch_end(self, trainer, pl_module):
        if not self._due(trainer):
            return
        results = [f.result() for f in self._futures]
        self._futures = []
        failures = {"pesq_failures": 0, "stoi_failures": 0}
        for r in results:
            failures["pesq_failures"] += r["pesq_error"] is not None
            failures["stoi_failures"] += r["stoi_error"] is not None
        scores = {}
        for name in ("pesq", "stoi"):
            out = torch.tensor([r[name] for r in results], dtype=torch.float64)
            inp = torch.tensor([r[f"input_{name}"] for r in results], dtype=torch.float64)
            scores.update({name: out, f"{name}_input": inp, f"{name}_i": out - inp})
        self.metrics.update(scores, failures)
        values = self.metrics.compute()
        self.metrics.reset()
        prefix = _prefix(trainer)
        pl_module.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, sync_dist=False)
        if values["pesq_failures"]:
            reasons = sorted({r["pesq_error"] for r in results if r["pesq_error"]})
            rank_zero_warn(f"PESQ failed on {int(values['pesq_failures'])} clip(s), skipped: {'; '.join(reasons)[:300]}")

    def on_validation_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def on_test_epoch_end(self, trainer, pl_module):
        self._epoch_end(trainer, pl_module)

    def teardown(self, trainer, pl_module, stage):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures = []


class OverSuppressionAlarm(L.Callback):
    """Warns, and logs ``val/muting_alarm`` = 1, when amplitude retention falls below a threshold.

    The research's supervised U-Net reached a low loss while keeping ~10 % of the signal:
    this is the check that would have caught it on the first validation.
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.alarms = 0

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        retention = trainer.callback_metrics.get("val/amplitude_retention")
        if retention is None or not np.isfinite(float(retention)):
            return
        muting = float(retention) < self.threshold
        pl_module.log("val/muting_alarm", float(muting))
        if muting:
            self.alarms += 1
            rank_zero_warn(
                f"OVER-SUPPRESSION: amplitude retention {float(retention):.2f} < {self.threshold} at epoch "
                f"{trainer.current_epoch}: the model is muting the signal (output RMS / clean RMS). A low loss "
                f"does not mean good audio; check the loss weights (system.loss.energy, si_sdr) or use --mix.")
