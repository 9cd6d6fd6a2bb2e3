"""TensorBoard audio and spectrogram images of a few fixed validation clips (rank 0 only)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib import colormaps


def spectrogram_image(wave: torch.Tensor, n_fft: int = 512, hop: int = 128, floor_db: float = -80.0) -> np.ndarray:
    """Log-magnitude spectrogram as an RGB uint8 image (H=frequency, low at the bottom, W=time)."""
    wave = wave.detach().float().reshape(-1).cpu()
    spec = torch.stft(wave, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20 * torch.log10(spec.clamp_min(1e-8))
    db = (db - db.max()).clamp_min(floor_db) / -floor_db + 1.0  # 0..1
    rgb = colormaps["magma"](db.flip(0).numpy())[..., :3]
    return (rgb * 255).astype(np.uint8)


def error_image(estimate: torch.Tensor, target: torch.Tensor, **kw) -> np.ndarray:
    """|estimate - target| as a spectrogram: structure in it means a systematic error."""
    return spectrogram_image(estimate.float() - target.float(), **kw)


class AudioExamples(L.Callback):
    def __init__(self, sample_rate: int, every_n_epochs: int = 1, clips: int = 3):
        self.sample_rate = sample_rate
        self.every_n_epochs = max(1, every_n_epochs)
        self.clips = clips

    def _tensorboard(self, trainer):
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if (trainer.sanity_checking or not trainer.is_global_zero
                or trainer.current_epoch % self.every_n_epochs):
            return
        writer = self._tensorboard(trainer)
        if writer is None:
            return
        index = batch["index"].reshape(-1).tolist()
        if min(index) >= self.clips:
            return
        step = trainer.global_step
        tracks = {"noisy": batch["noisy"], "clean": batch["clean"], "denoised": outputs["estimate"]}
        # Variants may add their own diagnostic images (Noise2Noise: cross_abs_a/b).
        extra = pl_module.media(batch) if hasattr(pl_module, "media") else {}
        for row, clip in enumerate(index):
            if clip >= self.clips:
                continue
            for name, wave in tracks.items():
                audio = wave[row].detach().float().reshape(-1).cpu()
                peak = float(audio.abs().max())
                writer.add_audio(f"audio_{clip}/{name}", (audio / max(peak, 1.0)).unsqueeze(0), step, self.sample_rate)
                writer.add_image(f"spectrogram_{clip}/{name}", spectrogram_image(audio), step, dataformats="HWC")
            for name, image in extra.items():
                writer.add_image(f"{name}_{clip}", image[row], step, dataformats="HWC")
