"""Small numpy signal helpers shared by the data generators, the restore engine and its checks."""

from __future__ import annotations

import functools
from math import gcd

import numpy as np
from scipy import fft as sfft


@functools.lru_cache(maxsize=8)
def hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window (float32), as the networks' STFT uses it; one read-only array per size,
    since every chunk of a restore asks for the same few."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    window.flags.writeable = False
    return window


def spectrogram(x: np.ndarray, n_fft: int, hop: int, pad_mode: str = "constant") -> np.ndarray:
    """Hann-windowed STFT of (..., samples) with centred frames -> complex64 (..., n_fft // 2 + 1, frames),
    ``samples // hop + 1`` frames; the edges padded with zeros (``constant``) or mirrored (``reflect``).
    The same numbers as the networks' torch STFT, in numpy, for the torch-free restore engine."""
    pad = n_fft // 2
    mode = "reflect" if pad_mode == "reflect" and x.shape[-1] > pad else "constant"
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    padded = np.pad(np.asarray(x, dtype=np.float32), widths, mode=mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    return np.swapaxes(sfft.rfft(frames * hann(n_fft), axis=-1), -1, -2)


def resynthesis(
    spec: np.ndarray, n_fft: int, hop: int, length: int, frames: np.ndarray | None = None
) -> np.ndarray:
    """Inverse of :func:`spectrogram` (weighted overlap-add; exact for an unmodified spectrum): complex
    (..., bins, frames) -> float32 (..., length).
    ``frames``: the indices (distinct) of the frames ``spec`` holds, of the ``length // hop + 1`` a
    spectrogram of ``length`` samples has; the others are silent (only the frames given are transformed)."""
    window = hann(n_fft)
    wave = sfft.irfft(np.swapaxes(spec, -1, -2), n=n_fft, axis=-1).astype(np.float32) * window
    if frames is not None:
        every = np.zeros((*wave.shape[:-2], length // hop + 1, n_fft), dtype=np.float32)
        every[..., frames, :] = wave
        wave = every
    count, overlap = wave.shape[-2], n_fft // hop
    total = hop * (count - 1) + n_fft
    out = np.zeros((*wave.shape[:-2], total), dtype=np.float32)
    norm = np.zeros(total, dtype=np.float32)
    for i in range(overlap):
        # Frames i, i + overlap, ... do not overlap each other, so they add in one reshape.
        part = wave[..., i::overlap, :]
        start, size = i * hop, part.shape[-2] * n_fft
        out[..., start : start + size] += part.reshape(*part.shape[:-2], size)
        norm[start : start + size] += np.tile(window**2, part.shape[-2])
    pad = n_fft // 2
    return out[..., pad : pad + length] / np.maximum(norm[pad : pad + length], 1e-11)


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Hann-windowed STFT of one signal, centred frames; returns (frames, n_fft // 2 + 1)."""
    return spectrogram(x, n_fft, hop).T


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int) -> np.ndarray:
    """Inverse of :func:`stft` (exact for an unmodified spectrum)."""
    return resynthesis(np.asarray(spec).T, n_fft, hop, length)


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


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """SI-SDR (dB) of ``estimate`` against ``reference``, whole arrays, in float64: for checks that two
    computations agree to 60-100 dB, beyond what the float32 measure of metrics/signal.py resolves."""
    reference, estimate = reference.astype(np.float64).ravel(), estimate.astype(np.float64).ravel()
    scale = np.dot(estimate, reference) / max(np.dot(reference, reference), 1e-20)
    target = scale * reference
    return float(10 * np.log10(max(np.sum(target**2), 1e-20) / max(np.sum((estimate - target) ** 2), 1e-20)))


def resample_to(x: np.ndarray, sample_rate: int, target: int) -> np.ndarray:
    """Polyphase resampling to ``target`` (the restore engine's way to the model's rate and back; what PESQ
    and ViSQOL score at); unchanged if already there."""
    if sample_rate == target:
        return x
    from scipy.signal import resample_poly  # a second's import: paid only by files that need resampling

    g = gcd(target, sample_rate)
    return resample_poly(x, target // g, sample_rate // g)
