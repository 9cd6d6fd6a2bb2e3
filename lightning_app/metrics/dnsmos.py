"""DNSMOS P.835 (SIG, BAK, OVRL; 1..5) without a reference, through the ONNX models ``speechmos`` ships.

DNSMOS (Reddy et al., ICASSP 2022) predicts the ITU-T P.835 ratings of speech: SIG (the speech itself),
BAK (the background noise: higher = less intrusive) and OVRL (overall). It is a speech measure, trained
on speech: music is refused (None plus a reason), never scored. Install with the ``dnsmos`` extra
(speechmos, onnxruntime, librosa); without it :func:`dnsmos_missing` says why and callers skip.

The model hears 16 kHz mono in 9.01 s windows: the input is averaged to mono, resampled with torchaudio
(:func:`lightning_app.data.audio_io.resample`), divided by its peak only if that exceeds 1 (speechmos
refuses samples outside [-1, 1]; dividing keeps the waveform, clipping would distort it). Clips up to
~18 s are scored exactly as speechmos (and Microsoft's dnsmos_local.py) do: windows every second,
averaged; longer ones by ``MAX_WINDOWS`` (10) windows spread evenly over the clip, so a long file costs a
bounded time (a window takes ~0.7-1.5 s on two busy CPU cores). Clips under 9.01 s are repeated to fill a
window (speechmos' rule); under ``MIN_SECONDS`` they are not scored. A per-clip failure is NaN plus a
logged reason, never an exception.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np

from lightning_app.metrics.perceptual import speech_content

log = logging.getLogger(__name__)

RATE = 16000
WINDOW_S = 9.01  # speechmos.dnsmos.INPUT_LENGTH
MAX_WINDOWS = 10
MIN_SECONDS = 1.0
KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
_FROM = {"dnsmos_sig": "sig_mos", "dnsmos_bak": "bak_mos", "dnsmos_ovrl": "ovrl_mos"}


@functools.cache
def dnsmos_missing() -> str | None:
    """Why DNSMOS cannot run here (speechmos, onnxruntime, librosa or requests not importable), or None."""
    try:
        import speechmos.dnsmos  # noqa: F401  (imports librosa, onnxruntime and requests itself)
    except Exception as exc:  # ImportError, or a native library that fails to load (OSError)
        return f"DNSMOS needs the 'dnsmos' extra (pip install -e '.[dnsmos]'): {type(exc).__name__}: {exc}"
    return None


def content_refusal(content: str | None) -> str | None:
    """Why DNSMOS does not apply to this content label, or None: it scores speech and unlabelled clips
    (None, "paired": the suite's rule in :func:`~lightning_app.metrics.perceptual.speech_content`)."""
    if speech_content(content):
        return None
    return f"DNSMOS is a speech measure: not computed for {content} content"


def skip_reason(content: str | None = None) -> str | None:
    """Why :func:`dnsmos_for_content` would not score a clip of this content here, or None if it would."""
    return content_refusal(content) or dnsmos_missing()


def nan_scores() -> dict[str, float]:
    return dict.fromkeys(KEYS, math.nan)


def to_model_input(x: np.ndarray, rate: int) -> np.ndarray:
    """(frames,) or (frames, channels) at ``rate`` -> float32 16 kHz mono within [-1, 1]."""
    from lightning_app.data.audio_io import resample, to_mono  # torch: only when scoring

    mono = np.ascontiguousarray(to_mono(np.asarray(x, dtype=np.float32)))
    y = np.asarray(resample(mono, int(rate), RATE), dtype=np.float32)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y / peak if peak > 1.0 else y


def _windows(y: np.ndarray) -> list[np.ndarray]:
    """The whole clip when speechmos would score at most MAX_WINDOWS windows, else MAX_WINDOWS even ones."""
    win = int(WINDOW_S * RATE)
    hops = int(np.floor(len(y) / RATE) - WINDOW_S) + 1 if len(y) >= win else 1
    if hops <= MAX_WINDOWS:
        return [y]
    starts = np.linspace(0, len(y) - win, MAX_WINDOWS).astype(np.int64)
    return [y[s : s + win] for s in starts]


def score(x: np.ndarray, rate: int) -> tuple[dict[str, float], str | None]:
    """DNSMOS of one clip: ({dnsmos_sig, dnsmos_bak, dnsmos_ovrl}, None), or (all NaN, reason)."""
    missing = dnsmos_missing()
    if missing:
        return nan_scores(), missing
    try:
        a = np.asarray(x)
        if a.ndim not in (1, 2) or a.shape[0] < MIN_SECONDS * rate:
            return nan_scores(), f"shorter than {MIN_SECONDS:g} s"
        if not np.all(np.isfinite(a)):
            return nan_scores(), "NaN or Inf samples"
        y = to_model_input(a, rate)
        if not np.any(y):
            return nan_scores(), "silent clip"
        from speechmos import dnsmos as sm

        results = [sm.run(w, RATE) for w in _windows(y)]
        out = {k: float(np.mean([r[src] for r in results])) for k, src in _FROM.items()}
    except Exception as exc:  # the model's or librosa's errors on one clip must not stop a report
        return nan_scores(), f"{type(exc).__name__}: {exc}"
    if not all(math.isfinite(v) for v in out.values()):
        return nan_scores(), "non-finite score"
    return out, None


def dnsmos(x: np.ndarray, rate: int) -> dict[str, float]:
    """:func:`score` with the reason of a failure logged (a warning) instead of returned."""
    out, reason = score(x, rate)
    if reason:
        log.warning("DNSMOS not scored: %s", reason)
    return out


def dnsmos_for_content(
    x: np.ndarray, rate: int, content: str | None
) -> tuple[dict[str, float] | None, str | None]:
    """DNSMOS for a clip labelled ``content``: (None, reason) for music (or without the extra), else
    (:func:`dnsmos` scores — NaN on a clip error, logged — and None)."""
    reason = skip_reason(content)
    if reason:
        return None, reason
    return dnsmos(x, rate), None
