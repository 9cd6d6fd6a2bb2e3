"""Mixing clean audio with noise at a drawn SNR, exactly as in the research:

noisy = clean + sqrt(P_clean / (snr * P_noise)) * noise,   snr = 10 ** (snr_db / 10)
"""

from __future__ import annotations

import numpy as np

PEAK_LIMIT = 0.99


def noise_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``clean`` over it has the given SNR (power ratio, in dB)."""
    p_clean = float(np.mean(np.square(clean, dtype=np.float64)))
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_noise <= 0.0:
        raise ValueError("noise segment is silent; cannot set an SNR against it")
    return noise * np.sqrt(p_clean / (10.0 ** (snr_db / 10.0) * p_noise))


def gain_without_clipping(
    signals: dict[str, np.ndarray], gain_db: float, peak_limit: float = PEAK_LIMIT
) -> dict[str, np.ndarray]:
    """One gain for every signal of an example (so their ratios hold), lowered if any would clip."""
    gain = 10.0 ** (gain_db / 20.0)
    peak = max(float(np.max(np.abs(s))) for s in signals.values()) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return {k: (v * gain).astype(np.float32) for k, v in signals.items()}
