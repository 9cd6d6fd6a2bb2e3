"""Small numpy signal helpers shared by the data generators."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy import fft as sfft
from scipy.signal import resample_poly


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Hann-windowed STFT, centred frames; returns (frames, n_fft // 2 + 1)."""
    pad = n_fft // 2
    padded = np.pad(x, (pad, pad + n_fft))
    n_frames = len(x) // hop + 1
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    return sfft.rfft(padded[idx].astype(np.float32) * window, axis=1)


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`stft` (exact for an unmodified spectrum)."""
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    frames = sfft.irfft(spec.astype(np.complex64), n=n_fft, axis=1) * window
    n_frames = frames.shape[0]
    total = hop * (n_frames - 1) + n_fft
    out = np.zeros(total)
    norm = np.zeros(total)
    for i in range(n_fft // hop):
        # Frames i, i + k, ... do not overlap each other, so they add in one reshape.
        sel = frames[i :: n_fft // hop]
        start = i * hop
        chunk = sel.reshape(-1)
        out[start : start + chunk.size] += chunk
        norm[start : start + chunk.size] += np.tile(window**2, sel.shape[0])
    pad = n_fft // 2
    out = out[pad : pad + length]
    norm = norm[pad : pad + length]
    return out / np.maximum(norm, 1e-8)


def shape_spectrum(
    rng: np.random.Generator, num_samples: int, gain: np.ndarray | callable, sample_rate: int
) -> np.ndarray:
    """Gaussian noise with magnitude response ``gain(freqs)``, unit RMS."""
    spec = sfft.rfft(rng.standard_normal(num_samples, dtype=np.float32))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spec *= (gain(freqs) if callable(gain) else gain).astype(np.float32)
    out = sfft.irfft(spec, n=num_samples).astype(np.float64)
    return out / max(float(np.sqrt(np.mean(out**2))), 1e-12)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def resample_to(x: np.ndarray, sample_rate: int, target: int) -> np.ndarray:
    """Polyphase resampling to ``target`` (what PESQ and ViSQOL score at); unchanged if already there."""
    if sample_rate == target:
        return x
    g = gcd(target, sample_rate)
    return resample_poly(x, target // g, sample_rate // g)
