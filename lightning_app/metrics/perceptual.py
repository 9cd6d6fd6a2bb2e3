"""PESQ (wideband, 16 kHz) and STOI per clip, and ViSQOL through metrics/visqol.py, safe in worker processes.

PESQ and STOI are speech measures: they are computed for speech clips only (and for clips with
no content label, as before contents existed). ViSQOL's audio mode scores music and speech.

Deliberately imports no torch: a spawned worker starts in a second instead of several.
Every failure of one clip becomes NaN plus a reason, never an exception: pesq raises
NoUtterancesError on a silent reference, a ValueError (NaN) on an all-zero output — what a
muting model produces — and BufferTooShortError under 0.25 s; pystoi errors on very short clips.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from lightning_app.data.dsp import resample_to
from lightning_app.metrics.visqol import safe_visqol

PESQ_RATE = 16000
MIN_PESQ_SECONDS = 0.25
# Content labels that name a dataset rather than a content (paired folders) or none at all.
UNLABELLED = (None, "paired")


def safe_pesq(clean: np.ndarray, other: np.ndarray, sample_rate: int) -> tuple[float, str | None]:
    from pesq import pesq

    if len(clean) < MIN_PESQ_SECONDS * sample_rate:
        return math.nan, "shorter than 0.25 s"
    ref, deg = resample_to(clean, sample_rate, PESQ_RATE), resample_to(other, sample_rate, PESQ_RATE)
    if not np.any(ref):
        return math.nan, "silent reference"
    if not np.any(deg):
        return math.nan, "silent output"
    try:
        score = float(pesq(PESQ_RATE, ref.astype(np.float64), deg.astype(np.float64), "wb"))
    except Exception as exc:  # pesq's own errors and its NaN ValueError alike
        return math.nan, f"{type(exc).__name__}: {exc}"
    return (score, None) if math.isfinite(score) else (math.nan, "non-finite score")


def safe_stoi(clean: np.ndarray, other: np.ndarray, sample_rate: int) -> tuple[float, str | None]:
    from pystoi import stoi

    if not np.any(clean):
        return math.nan, "silent reference"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = float(
                stoi(clean.astype(np.float64), other.astype(np.float64), sample_rate, extended=False)
            )
    except Exception as exc:
        return math.nan, f"{type(exc).__name__}: {exc}"
    # pystoi returns 1e-5 when it finds too little speech to score: that is no score.
    return (
        (score, None) if math.isfinite(score) and score > 1e-4 else (math.nan, "too little speech for STOI")
    )


def speech_content(content: str | None) -> bool:
    """Whether PESQ/STOI apply: speech clips, and unlabelled ones (paired corpora are speech-enhancement
    sets). ``evaluate`` labels its paired clips before scoring (their speech/ or music/ folder, --content, or
    a guess from the clean file: metrics/content.py), so there every clip it scores is labelled."""
    return content in UNLABELLED or "speech" in content  # speech, real_speech


def score_signal(
    clean: np.ndarray, signal: np.ndarray, sample_rate: int, speech: bool = True, visqol: bool = False
) -> dict:
    """PESQ and STOI (``speech``) and ViSQOL (``visqol``) of one signal against the clean one, with failure
    reasons (``<name>_error``); a measure not asked for is NaN with no reason."""
    out = {}
    for name, wanted, fn in (
        ("pesq", speech, safe_pesq),
        ("stoi", speech, safe_stoi),
        ("visqol", visqol, safe_visqol),
    ):
        out[name], out[f"{name}_error"] = fn(clean, signal, sample_rate) if wanted else (math.nan, None)
    return out


def score_clip(
    clean: np.ndarray,
    noisy: np.ndarray,
    estimate: np.ndarray,
    sample_rate: int,
    speech: bool = True,
    visqol: bool = False,
) -> dict:
    """:func:`score_signal` of the output, and of the noisy input under ``input_`` names."""
    out = score_signal(clean, estimate, sample_rate, speech, visqol)
    out.update({f"input_{k}": v for k, v in score_signal(clean, noisy, sample_rate, speech, visqol).items()})
    return out
