"""One line per validation in the terminal: what a listener would hear, and whether the model mutes or makes
the signal louder.

Epochs are counted from 1 wherever a person reads them (this line, the progress bar, the spectrogram titles,
the alarms): ``epoch 3 of 3`` is the last epoch of three. Lightning's own counter (``trainer.current_epoch``,
the ``epoch`` key of a checkpoint) starts at 0; the checkpoint files are named best.ckpt and last.ckpt, with
no epoch in the name.
"""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, TQDMProgressBar

from lightning_app.metrics.quality import (
    RETENTION_LOUD,
    RETENTION_TARGET,
    SPEECH_REMOVED_LABEL,
    WORSE_THAN_INPUT_DB,
)


def epoch_label(current_epoch: int, max_epochs: int | None = None) -> str:
    """``epoch 3 of 8`` for Lightning's 0-based ``current_epoch`` 2 (``epoch 3`` when the end is open)."""
    if max_epochs is None or max_epochs < 0:
        return f"epoch {current_epoch + 1}"
    return f"epoch {current_epoch + 1} of {max_epochs}"


def _value(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def level_alarms(metrics: dict, contents: tuple[str, ...] = ()) -> list[str]:
    """``MUTING (music)`` when the muting alarm is raised (``val_status/muting_alarm``, from
    ``metrics.retention_alarm``), ``LOUDER than the reference (x3.85)`` when the retention, overall or of a
    content, is above ``RETENTION_LOUD``; empty when the level is fine."""
    alarms = []
    if _value(metrics, "val_status/muting_alarm"):
        muted = [c for c in contents if _value(metrics, f"val_status/muting_alarm/{c}")]
        alarms.append(f"MUTING ({', '.join(muted) or 'overall'})")
    overall = _value(metrics, "val/amplitude_retention")
    loud = [
        f"{c} x{v:.2f}"
        for c in (contents if len(contents) > 1 else ())
        if (v := _value(metrics, f"val/amplitude_retention/{c}")) is not None and v > RETENTION_LOUD
    ]
    if overall is not None and overall > RETENTION_LOUD:
        loud.insert(0, f"x{overall:.2f}")
    if loud:
        alarms.append(f"LOUDER than the reference ({', '.join(loud)})")
    return alarms


def summary_line(metrics: dict, epoch: int, max_epochs: int | None, contents: tuple[str, ...] = ()) -> str:
    """
    ``epoch 3 of 8 · SI-SDR 9.12 dB (input 4.80, gain +4.32) · music +4.00 · speech +4.61 · retention 0.99 ·
    no muting``
    """
    parts = [epoch_label(epoch, max_epochs)]
    si, si_in, gain = (_value(metrics, f"val/{k}") for k in ("si_sdr", "si_sdr_input", "si_sdr_i"))
    if si is not None:
        parts.append(
            f"SI-SDR {si:.2f} dB (input {si_in:.2f}, gain {gain:+.2f})"
            if si_in is not None and gain is not None
            else f"SI-SDR {si:.2f} dB"
        )
    for content in contents:
        if (g := _value(metrics, f"val/si_sdr_i/{content}")) is not None:
            parts.append(f"{content} {g:+.2f}")
    if (worse := _value(metrics, "val/worse_than_input")) is not None:
        parts.append(f"{worse:.0%} of clips worse than input")
    retention = _value(metrics, "val/amplitude_retention")
    if retention is not None:
        per = [
            f"{c} {v:.2f}"
            for c in contents
            if (v := _value(metrics, f"val/amplitude_retention/{c}")) is not None
        ]
        parts.append(f"retention {retention:.2f}" + (f" ({', '.join(per)})" if len(per) > 1 else ""))
    for name, label in (("pesq", "PESQ"), ("stoi", "STOI"), ("visqol", "ViSQOL")):
        if (v := _value(metrics, f"val/{name}")) is not None:
            gain = _value(metrics, f"val/{name}_i")
            parts.append(f"{label} {v:.2f}" + (f" ({gain:+.2f})" if gain is not None else ""))
    if (leak := _value(metrics, "val/leakage")) is not None:
        parts.append(f"leakage {leak:.3f}")
    alarms = level_alarms(metrics, contents)
    if alarms:
        parts += alarms
    elif _value(metrics, "val_status/muting_alarm") is not None:
        parts.append("no muting")
    return " · ".join(parts)


def _fmt(metrics: dict, key: str, unit: str = "", sign: bool = False, digits: int = 2) -> str:
    value = _value(metrics, key)
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}{unit}" if sign else f"{value:.{digits}f}{unit}"


def _share(metrics: dict, key: str) -> str:
    value = _value(metrics, key)
    return "n/a" if value is None else f"{value:.0%}"


def final_lines(metrics: dict, contents: tuple[str, ...] = ()) -> list[str]:
    """The end of a run, exact (dB at 2 decimals, correlations at 3): quality against the input, the level,
    what was removed, the Noise2Noise diagnostics when there are any, and each content apart."""

    def f(key, unit="", sign=False, digits=2):
        return _fmt(metrics, key, unit, sign, digits)

    lines = [
        f"SI-SDR {f('val/si_sdr', ' dB')} (input {f('val/si_sdr_input', ' dB')}, gain "
        f"{f('val/si_sdr_i', ' dB', sign=True)}; best {f('val_status/si_sdr_best', ' dB')})   "
        f"LSD {f('val/lsd', ' dB')} (input {f('val/lsd_input', ' dB')})",
        f"PESQ {f('val/pesq')} (input {f('val/pesq_input')})   STOI {f('val/stoi')} "
        f"(input {f('val/stoi_input')})   (speech clips)",
        f"ViSQOL {f('val/visqol')} (input {f('val/visqol_input')}; level-blind)",
    ]
    alarms = level_alarms(metrics, contents)
    muting = (
        "   MUTING ALARM (retention below metrics.retention_alarm)"
        if any(a.startswith("MUTING") for a in alarms)
        else ""
    )
    loud = "".join(f"   {a}" for a in alarms if a.startswith("LOUDER"))
    lines.append(
        f"amplitude retention {f('val/amplitude_retention')} (target {RETENTION_TARGET[0]:g}-"
        f"{RETENTION_TARGET[1]:g}){muting}{loud}"
    )
    lines.append(
        f"clips worse than input (SI-SDR more than {WORSE_THAN_INPUT_DB:g} dB below it): "
        f"{_share(metrics, 'val/worse_than_input')}"
    )
    lines.append(
        f"{SPEECH_REMOVED_LABEL} {f('val/speech_removed', digits=3)} (|correlation| of what was removed "
        "with the clean signal: 0 = only noise removed; not the share of the signal removed)"
    )
    if _value(metrics, "val/leakage") is not None:
        lines.append(
            f"Noise2Noise: leakage {f('val/leakage', digits=3)} (near 0 is right)   residual noise "
            f"{f('val/residual_noise', digits=3)}   cross-path SI-SDR gain "
            f"{f('val/cross_si_sdr_i', ' dB', sign=True)}"
        )
    # Per content: the overall mean can hide a model that keeps speech and mutes music.
    for content in sorted({k.rsplit("/", 1)[1] for k in metrics if k.startswith("val/si_sdr_i/")}):
        lines.append(
            f"{content}: SI-SDR gain {f(f'val/si_sdr_i/{content}', ' dB', sign=True)}   retention "
            f"{f(f'val/amplitude_retention/{content}')}   ViSQOL {f(f'val/visqol/{content}')}   "
            f"clips worse than input {_share(metrics, f'val/worse_than_input/{content}')}"
        )
    return lines


def result_line(metrics: dict, contents: tuple[str, ...] = ()) -> str:
    """The whole run in one line (``train(..., quiet=True)``): gain, level, the perceptual scores that were
    measured, leakage for Noise2Noise, and the level alarms."""
    parts = []
    if _value(metrics, "val/si_sdr_i") is not None:
        parts.append(
            f"SI-SDR gain {_fmt(metrics, 'val/si_sdr_i', ' dB', sign=True)} "
            f"(output {_fmt(metrics, 'val/si_sdr', ' dB')})"
        )
    if _value(metrics, "val/amplitude_retention") is not None:
        parts.append(f"retention {_fmt(metrics, 'val/amplitude_retention')}")
    for name, label in (("pesq", "PESQ"), ("stoi", "STOI"), ("visqol", "ViSQOL")):
        if _value(metrics, f"val/{name}") is not None:
            parts.append(f"{label} {_fmt(metrics, f'val/{name}')}")
    if _value(metrics, "val/leakage") is not None:
        parts.append(f"leakage {_fmt(metrics, 'val/leakage', digits=3)}")
    alarms = level_alarms(metrics, contents)
    parts += alarms or (["no muting"] if _value(metrics, "val_status/muting_alarm") is not None else [])
    return ", ".join(parts) or "no validation metrics"


class EpochSummary(L.Callback):
    """Prints ``summary_line`` after every validation (not the sanity check), on rank 0, without breaking
    the progress bar. on_validation_end: every metric of the epoch is logged by then, the system's too."""

    def __init__(self, contents: tuple[str, ...] = ()):
        self.contents = tuple(contents)

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        line = summary_line(
            trainer.callback_metrics, trainer.current_epoch, trainer.max_epochs, self.contents
        )
        bar = trainer.progress_bar_callback
        if bar is not None and hasattr(bar, "print"):
            bar.print(line)
        else:
            print(line, flush=True)


class EpochProgressBar(TQDMProgressBar):
    """Lightning's progress bar, counting epochs as the epoch line does (``epoch 3 of 3``, not ``Epoch 2/2``)
    and without the run's version number (``v_num``: the run directory is printed at the end)."""

    def on_train_epoch_start(self, trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(epoch_label(trainer.current_epoch, trainer.max_epochs))

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items


class LayerSummary(ModelSummary):
    """Lightning's model summary without its FLOPs: they are counted only for a model with an
    ``example_input_array`` (none here), so the column and the ``Total Flops`` line read 0."""

    @staticmethod
    def summarize(summary_data, *totals, total_flops: int = 0, **summarize_kwargs) -> None:
        # totals: parameters, trainable parameters, model size, training modes (Lightning passes the FLOPs by
        # keyword)
        if total_flops:
            ModelSummary.summarize(summary_data, *totals, total_flops=total_flops, **summarize_kwargs)
            return
        from lightning.pytorch.callbacks.model_summary import log
        from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

        columns = [(name, column) for name, column in summary_data if name != "FLOPs"]
        table = _format_summary_table(*totals, total_flops, *columns)
        log.info("\n" + "\n".join(line for line in table.splitlines() if not line.endswith("Total Flops")))


class ResultsText(L.Callback):
    """The exact final values (``final_lines``) in TensorBoard's Text tab, under ``results``: curves there
    are smoothed (0.6 by default, which no event file can change), these numbers are not. Written when fit
    ends, before Lightning closes the event file."""

    def __init__(self, contents: tuple[str, ...] = ()):
        self.contents = tuple(contents)

    def on_fit_end(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        from lightning.pytorch.loggers import TensorBoardLogger

        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "val_status/"))}
        if not metrics:
            return
        text = (
            f"Final values after {epoch_label(trainer.current_epoch - 1, trainer.max_epochs)} (exact; the "
            "curves are smoothed unless Smoothing is set to 0):\n\n"
            + "\n".join(f"    {line}" for line in final_lines(metrics, self.contents))
        )
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("results", text, trainer.global_step)
