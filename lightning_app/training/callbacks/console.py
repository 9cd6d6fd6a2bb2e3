"""One line per validation in the terminal: what a listener would hear, and whether the model mutes."""

from __future__ import annotations

import math

import lightning as L


def _value(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def summary_line(metrics: dict, epoch: int, max_epochs: int | None, contents: tuple[str, ...] = ()) -> str:
    """
    ``epoch 3/8 · SI-SDR 9.12 dB (input 4.80, gain +4.32) · music +4.0 · speech +4.6 · retention 0.99 · ...``
    """
    parts = [f"epoch {epoch + 1}/{max_epochs}" if max_epochs else f"epoch {epoch + 1}"]
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
    alarm = _value(metrics, "val_status/muting_alarm")
    if alarm is not None:
        muted = [c for c in contents if _value(metrics, f"val_status/muting_alarm/{c}")]
        parts.append(f"MUTING ({', '.join(muted) or 'overall'})" if alarm else "no muting")
    return " · ".join(parts)


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
