"""What the room and the recording chain of an era do to a clean performance.

Applied to the clean reference of every procedural example (speech and music), before noise is
added: a denoiser is trained to recover what was *recorded*, never asked to invent a band that
the era's horn or microphone could not capture.

- room: a synthetic impulse response — direct sound, a few early reflections, and an exponentially
  decaying noise tail whose decay is faster at high frequencies (air and wall absorption), with a
  reverberation time RT60 drawn from a range;
- era: the recording chain's band (acoustic horn recording roughly 200 Hz - 3 kHz with horn
  resonances; electrical microphones and cutters roughly 50 Hz - 8 kHz; later full band), drawn by
  weight, with the edges themselves drawn around those values;
- tone (training only, every source, real recordings too): a high shelf of a few dB up or down, as
  mastering and transfer chains differ. Bright remasters and dark transfers both exist, and a model that
  has only heard the corpus's own tone takes the top octave of a bright recording for hiss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sfft
from scipy.signal import oaconvolve

# Band edges (low Hz ranges, high Hz ranges) per era.
ERAS = {
    "acoustic": ((150.0, 300.0), (2500.0, 4000.0)),
    "electrical": ((40.0, 100.0), (5000.0, 9000.0)),
    "full": ((15.0, 40.0), (15000.0, 22000.0)),
}


@dataclass(frozen=True)
class RecordingConfig:
    """Ranges the recording chain draws from; defaults live in configs/defaults.yaml
    (data.clean.recording)."""

    room_probability: float = 0.0
    rt60_s: tuple[float, float] = (0.2, 1.8)
    wet_db: tuple[float, float] = (-18.0, -3.0)  # reverberant tail relative to the direct sound
    era_weights: dict = field(default_factory=lambda: {"acoustic": 0.0, "electrical": 0.0, "full": 1.0})
    tone_probability: float = 0.0  # share of training clips given a high shelf (apply_tone)
    tone_db: tuple[float, float] = (-6.0, 9.0)  # the shelf's gain at the top of the band
    tone_hz: tuple[float, float] = (1500.0, 8000.0)  # its corner, drawn log-uniformly

    @classmethod
    def from_ranges(cls, **ranges) -> RecordingConfig:
        return cls(
            **{
                k: tuple(v) if isinstance(v, list | tuple) else dict(v) if isinstance(v, dict) else v
                for k, v in ranges.items()
            }
        )


def room_impulse_response(
    rng: np.random.Generator, sample_rate: int, rt60: float, wet_db: float
) -> np.ndarray:
    """Direct path at 0, early reflections within 40 ms, then a diffuse tail decaying 60 dB in ``rt60``."""
    length = int(min(rt60, 3.0) * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length)
    # High frequencies die sooner: split the tail into two bands with different decay times.
    spectrum = sfft.rfft(tail)
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    split = rng.uniform(2000.0, 6000.0)
    low = sfft.irfft(spectrum * (freqs < split), n=length) * np.exp(-6.9 * t / rt60)
    high = sfft.irfft(spectrum * (freqs >= split), n=length) * np.exp(
        -6.9 * t / (rt60 * rng.uniform(0.3, 0.7))
    )
    tail = (low + high) * np.clip((t - 0.005) / 0.02, 0.0, 1.0)  # the diffuse field builds up after ~5 ms
    ir = tail * np.sqrt(
        10 ** (wet_db / 10) / max(float(np.sum(tail**2)), 1e-12)
    )  # tail energy vs direct sound
    ir[0] += 1.0
    for _ in range(int(rng.integers(2, 7))):
        delay = int(rng.uniform(0.002, 0.04) * sample_rate)
        if delay < length:
            ir[delay] += rng.uniform(0.1, 0.5) * rng.choice([-1.0, 1.0])
    return ir


def era_response(rng: np.random.Generator, era: str, freqs: np.ndarray) -> np.ndarray:
    """Magnitude response of an era's recording chain: smooth band edges, horn resonances for acoustic."""
    (lo_range, hi_range) = ERAS[era]
    low = np.exp(rng.uniform(np.log(lo_range[0]), np.log(lo_range[1])))
    high = np.exp(rng.uniform(np.log(hi_range[0]), np.log(hi_range[1])))
    order = rng.uniform(3.0, 5.0)  # steepness of the edges (18-30 dB/octave): cutter heads fell off fast
    f = np.maximum(freqs, 1.0)
    response = 1.0 / np.sqrt(1.0 + (low / f) ** (2 * order)) / np.sqrt(1.0 + (f / high) ** (2 * order))
    if era == "acoustic":  # the recording horn's resonances: peaks of several dB inside the band
        for _ in range(int(rng.integers(2, 5))):
            centre = np.exp(rng.uniform(np.log(low * 1.5), np.log(high)))
            width = centre * rng.uniform(0.1, 0.3)
            response *= 1.0 + rng.uniform(0.5, 2.0) / (1.0 + ((f - centre) / width) ** 2)
    return response


def shelf_response(freqs: np.ndarray, gain_db: float, corner_hz: float) -> np.ndarray:
    """Magnitude of a smooth high shelf: 0 dB far below ``corner_hz``, ``gain_db`` far above, half of it (in
    dB) at the corner."""
    weight = freqs**2 / (freqs**2 + corner_hz**2)
    return 10 ** (gain_db * weight / 20)


def high_shelf(audio: np.ndarray, sample_rate: int, gain_db: float, corner_hz: float) -> np.ndarray:
    """``audio`` through the high shelf of ``shelf_response``, applied over the whole signal at once."""
    n = len(audio)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    return sfft.irfft(sfft.rfft(audio) * shelf_response(freqs, gain_db, corner_hz), n=n)


def apply_tone(
    rng: np.random.Generator, audio: np.ndarray, sample_rate: int, config: RecordingConfig
) -> np.ndarray:
    """``audio`` through a high shelf drawn from ``config`` (with probability ``tone_probability``); the
    level is left to the caller."""
    if config.tone_probability <= 0 or rng.random() >= config.tone_probability:
        return audio
    gain = rng.uniform(*config.tone_db)
    corner = np.exp(rng.uniform(np.log(config.tone_hz[0]), np.log(config.tone_hz[1])))
    return high_shelf(audio, sample_rate, gain, corner)


def apply_recording(
    rng: np.random.Generator, audio: np.ndarray, sample_rate: int, config: RecordingConfig = RecordingConfig()
) -> tuple[np.ndarray, str]:
    """(the clean reference as the era recorded it, the era's name); the level is left to the caller."""
    out = np.asarray(audio, dtype=np.float64)
    n = len(out)
    if config.room_probability > 0 and rng.random() < config.room_probability:
        ir = room_impulse_response(rng, sample_rate, rng.uniform(*config.rt60_s), rng.uniform(*config.wet_db))
        out = oaconvolve(out, ir)[:n]
    names = [e for e, w in config.era_weights.items() if w > 0]
    if not names:
        return out, "none"
    weights = np.array([config.era_weights[e] for e in names], dtype=float)
    era = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    spectrum = sfft.rfft(out)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    return sfft.irfft(spectrum * era_response(rng, era, freqs), n=n), era
