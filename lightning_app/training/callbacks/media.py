"""TensorBoard audio and spectrograms of a few fixed validation clips (rank 0 only).

Each clip of each run is one group, named with what it holds and whose it is
(``clip_0 · music · crackle+hum · input SNR 4.3 dB · supervised_unet version_0``), so the noise that was
added is read next to what the model did: players in a fixed order (noisy, denoised, clean) and one picture
of the three spectrograms on one dB scale, with axes and a colour bar. Variants may add tracks of their own
(Noise2Noise: what each cross path got wrong), drawn as a second row.

Why the run is in the group: TensorBoard's Audio and Images dashboards make one section per group (the tag
up to its first "/") and sort the cards in it by tag, then by run. With the same tags in every run, two runs'
players interleave (noisy A, noisy B, denoised A, ...) and no row is a run; with the run in the group, each
section holds one run's clip, and the same clip of each run sits in adjacent sections.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_app.evaluation import spectrograms
from lightning_app.training.callbacks.console import epoch_label

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


def run_label(logger: TensorBoardLogger) -> str:
    """``supervised_unet version_0``: the run's folder and version as the logger names them (a stage of a
    sequence, runs/progressive/stage1/version_0, is ``stage1 version_0``). No "/": TensorBoard groups tags
    by what comes before the first one."""
    name = str(logger.name or "").replace("/", " ")
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return f"{name} {version}".strip()


def _wave(tensor: torch.Tensor, row: int):
    return tensor[row].detach().float().reshape(-1).cpu().numpy()


class AudioExamples(L.Callback):
    def __init__(self, sample_rate: int, every_n_epochs: int = 1, clips: int = 3):
        self.sample_rate = sample_rate
        self.every_n_epochs = max(1, every_n_epochs)
        self.clips = clips

    def _tensorboard(self, trainer) -> TensorBoardLogger | None:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger
        return None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or trainer.current_epoch % self.every_n_epochs
        ):
            return
        logger = self._tensorboard(trainer)
        if logger is None:
            return
        writer, run = logger.experiment, run_label(logger)
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
            group = f"{clip_label(batch, row, clip)} · {run}"
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
                title=f"{group}   ({epoch_label(trainer.current_epoch, trainer.max_epochs)}, step {step})",
            )
            writer.add_image(f"{group}/spectrograms", spectrograms.rgb(fig), step, dataformats="HWC")
