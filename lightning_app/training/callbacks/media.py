"""TensorBoard audio and spectrograms of a few fixed validation clips (rank 0 only).

Each clip is one group, named with what it holds (``clip_0 · music · crackle+hum · input SNR 4.3 dB``), so
the noise that was added is read next to what the model did: players in a fixed order (noisy, denoised,
clean) and one picture of the three spectrograms on one dB scale, with axes and a colour bar. Variants
may add tracks of their own (Noise2Noise: what each cross path got wrong), drawn as a second row.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_app.evaluation import spectrograms

#: the players' order; TensorBoard sorts a group's tags, hence the numbers
TRACKS = ("noisy", "denoised", "clean")


def clip_label(batch: dict, row: int, clip: int) -> str:
    """What a validation clip holds: its number, content, noise and input SNR (what the batch says of it)."""
    parts = [f"clip_{clip}"]
    for key in ("content", "noise_type"):
        value = batch.get(key)
        if value is not None and value[row] not in (None, ""):
            parts.append(str(value[row]))
    if "snr_db" in batch:
        parts.append(f"input SNR {float(batch['snr_db'][row]):.1f} dB")
    return " · ".join(parts)


def _wave(tensor: torch.Tensor, row: int):
    return tensor[row].detach().float().reshape(-1).cpu().numpy()


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
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or trainer.current_epoch % self.every_n_epochs
        ):
            return
        writer = self._tensorboard(trainer)
        if writer is None:
            return
        index = batch["index"].reshape(-1).tolist()
        if min(index) >= self.clips:
            return
        step = trainer.global_step
        tracks = {"noisy": batch["noisy"], "denoised": outputs["estimate"], "clean": batch["clean"]}
        # Variants may add diagnostic tracks (Noise2Noise: |cross output - its target|), one row below.
        extra = pl_module.media(batch) if hasattr(pl_module, "media") else {}
        for row, clip in enumerate(index):
            if clip >= self.clips:
                continue
            group = clip_label(batch, row, clip)
            waves = {name: _wave(tracks[name], row) for name in TRACKS}
            for number, (name, audio) in enumerate(waves.items(), start=1):
                peak = float(abs(audio).max(initial=0.0))
                writer.add_audio(
                    f"{group}/{number} {name}",
                    torch.from_numpy(audio / max(peak, 1.0)).unsqueeze(0),
                    step,
                    self.sample_rate,
                )
            examples = [waves] + ([{name: _wave(t, row) for name, t in extra.items()}] if extra else [])
            fig, _ = spectrograms.figure(
                examples,
                self.sample_rate,
                width=12,
                row_height=3.0,
                dpi=80,
                row_labels=["noisy → denoised → clean", "diagnostics"][: len(examples)],
                title=f"{group}   (epoch {trainer.current_epoch}, step {step})",
            )
            writer.add_image(f"{group}/spectrograms", spectrograms.rgb(fig), step, dataformats="HWC")
