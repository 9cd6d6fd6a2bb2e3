"""Callbacks shared by every variant: quality metrics, media, alarms, RNG state."""

from lightning_app.training.callbacks.console import EpochSummary
from lightning_app.training.callbacks.media import AudioExamples
from lightning_app.training.callbacks.quality import OverSuppressionAlarm, PerceptualQuality, WaveformQuality
from lightning_app.training.callbacks.state import RNGState

__all__ = [
    "AudioExamples",
    "EpochSummary",
    "OverSuppressionAlarm",
    "PerceptualQuality",
    "RNGState",
    "WaveformQuality",
]
