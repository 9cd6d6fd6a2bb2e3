"""ViSQOL v3 audio mode (MOS-LQO, 1 to 5, full reference) per clip, safe to run in worker processes.

For music and speech alike, at 48 kHz (clips are resampled). It scales the degraded signal to
the reference's sound-pressure level before comparing, so it is level-blind: a model that keeps
10 % of the signal can still score well. It sits next to amplitude retention, never instead.
Imports no torch (spawned workers start fast) and never raises: a missing package, a clip too
short or silent, or a library error is NaN plus a reason. About 2 s of CPU per 3-s clip.
"""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np

from lightning_app.data.dsp import resample_to, rms

VISQOL_RATE = 48000
# The audio mode needs 45 spectrogram frames (about 0.95 s) or it raises; one second is a clear rule.
MIN_VISQOL_SECONDS = 1.0
# ViSQOL rescales the output to the reference's level, so near-silence would be scored as if it were audio.
SILENT_RMS = 1e-6
INSTALL_HINT = "pip install -c constraints.txt -e '.[visqol]'"
MISSING = f"visqol-python is not installed ({INSTALL_HINT})"

_api = None


def visqol_missing() -> str | None:
    """None when ViSQOL can run here, else the reason (checked without importing it)."""
    if any(importlib.util.find_spec(m) is None for m in ("visqol", "libsvm")):
        return MISSING
    return None


def _audio_mode_api():
    global _api
    if _api is None:
        from visqol import VisqolApi  # the pip package, not this module

        api = VisqolApi()
        api.create(mode="audio")  # its SVR model ships in the wheel
        _api = api
    return _api


def safe_visqol(reference: np.ndarray, degraded: np.ndarray, sample_rate: int) -> tuple[float, str | None]:
    """(MOS-LQO, None), or (NaN, reason) when the pair cannot be scored."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    deg = np.asarray(degraded, dtype=np.float64).reshape(-1)
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    if n < MIN_VISQOL_SECONDS * sample_rate:
        return math.nan, f"shorter than {MIN_VISQOL_SECONDS:g} s"
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(deg))):
        return math.nan, "non-finite samples"
    if rms(ref) < SILENT_RMS:
        return math.nan, "silent reference"
    if rms(deg) < SILENT_RMS:
        return math.nan, "silent output"
    try:
        api = _audio_mode_api()
    except ImportError:
        return math.nan, MISSING
    except Exception as exc:
        return math.nan, f"ViSQOL setup failed: {type(exc).__name__}: {exc}"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ref48, deg48 = (
                resample_to(ref, sample_rate, VISQOL_RATE),
                resample_to(deg, sample_rate, VISQOL_RATE),
            )
            score = float(api.measure_from_arrays(ref48, deg48, VISQOL_RATE).moslqo)
    except Exception as exc:
        return math.nan, f"{type(exc).__name__}: {exc}"
    return (score, None) if math.isfinite(score) else (math.nan, "non-finite score")
