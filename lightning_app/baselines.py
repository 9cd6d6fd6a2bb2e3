"""Classic denoisers that every report puts next to the checkpoints.

Each baseline maps one mono float clip at ``sample_rate`` to a clip of the same length.
They know nothing of the clean signal: the noise is estimated from the noisy clip itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lightning_app.data.dsp import istft, stft

Baseline = Callable[[np.ndarray, int], np.ndarray]


def spectral_gating(stationary: bool) -> Baseline:
    """The ``noisereduce`` package's spectral gate (stationary or non-stationary noise estimate)."""
    import noisereduce  # imported on use: only reports need it

    def run(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        out = noisereduce.reduce_noise(y=audio.astype(np.float32), sr=sample_rate, stationary=stationary)
        return np.asarray(out, dtype=np.float32)[: len(audio)]

    return run


def noise_power(power: np.ndarray, quantile: float = 0.2) -> np.ndarray:
    """Per-bin noise power from the quieter frames of a (frames, bins) periodogram.

    For stationary Gaussian noise a bin's power is exponentially distributed, so its
    q-quantile is -ln(1 - q) times the mean; speech, present in only some frames, barely
    moves a low quantile.
    """
    return np.quantile(power, quantile, axis=0) / -np.log1p(-quantile) + 1e-12


def wiener_decision_directed(audio: np.ndarray, sample_rate: int, n_fft: int = 512, hop: int = 128,
                             alpha: float = 0.98, gain_floor: float = 0.1) -> np.ndarray:
    """Wiener gain with the decision-directed a priori SNR (Ephraim and Malah, 1984).

    xi(l) = alpha |S(l-1)|^2 / noise + (1 - alpha) max(gamma(l) - 1, 0), gain = xi / (1 + xi),
    never below ``gain_floor`` (limits musical noise).
    """
    spec = stft(audio.astype(np.float32), n_fft, hop)
    power = np.abs(spec) ** 2
    noise = noise_power(power)
    gains = np.empty_like(power)
    previous = np.zeros(power.shape[1])
    for t in range(power.shape[0]):
        gamma = power[t] / noise
        xi = alpha * previous / noise + (1 - alpha) * np.maximum(gamma - 1.0, 0.0)
        gains[t] = np.maximum(xi / (1.0 + xi), gain_floor)
        previous = gains[t] ** 2 * power[t]
    return istft(spec * gains, n_fft, hop, len(audio)).astype(np.float32)


def baselines() -> dict[str, Baseline]:
    return {
        "spectral gating (stationary)": spectral_gating(stationary=True),
        "spectral gating (non-stationary)": spectral_gating(stationary=False),
        "Wiener (decision-directed)": wiener_decision_directed,
    }
