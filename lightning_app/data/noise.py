"""Procedural degradations of historical recordings.

Each generator is ``fn(rng, num_samples, sample_rate, **params) -> float64 array`` with
unit RMS (the mixer sets the level from the SNR), so generators can be summed at
relative levels. Parameters are ranges the generator draws from; their defaults live in
``configs/defaults.yaml`` under ``data.noise.generators``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.signal import oaconvolve

from lightning_app.data.dsp import rms, shape_spectrum

NoiseFn = Callable[..., np.ndarray]

# Record and film speeds that set the periodicities of thumps, swish and perforation buzz.
_RPM = (78.0, 45.0, 33.333)
_FILM_FPS = (24.0, 25.0)


def _unit(x: np.ndarray) -> np.ndarray:
    level = rms(x)
    return x / level if level > 1e-12 else x


def _uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi))


def _log_uniform(rng: np.random.Generator, bounds) -> float:
    lo, hi = bounds
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _events(rng: np.random.Generator, num_samples: int, sample_rate: int, rate_hz: float,
            minimum: int = 1) -> np.ndarray:
    """Poisson event positions; at least ``minimum`` so a short clip is never noise-free."""
    count = max(int(rng.poisson(rate_hz * num_samples / sample_rate)), minimum)
    return rng.integers(0, num_samples, size=count)


def _place(num_samples: int, positions: np.ndarray, amplitudes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    impulses = np.zeros(num_samples + len(kernel))
    np.add.at(impulses, positions, amplitudes)
    return oaconvolve(impulses, kernel)[:num_samples]


def colored(rng, num_samples, sample_rate, exponent=(0.0, 0.0)):
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    beta = _uniform(rng, exponent)
    return shape_spectrum(rng, num_samples, lambda f: np.maximum(f, 20.0) ** (-beta / 2), sample_rate)


def white(rng, num_samples, sample_rate):
    return colored(rng, num_samples, sample_rate, (0.0, 0.0))


def pink(rng, num_samples, sample_rate, exponent=(0.8, 1.2)):
    return colored(rng, num_samples, sample_rate, exponent)


def brown(rng, num_samples, sample_rate, exponent=(1.7, 2.2)):
    return colored(rng, num_samples, sample_rate, exponent)


def surface_hiss(rng, num_samples, sample_rate, centre_hz=(1500.0, 6000.0), swish_depth=(0.0, 0.5)):
    """Groove noise of a shellac/vinyl record: broad band-pass hiss that swells once per turn."""
    centre = _log_uniform(rng, centre_hz)
    width = rng.uniform(1.0, 2.5)  # octaves
    band = lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / centre) / width) ** 2)
    hiss = shape_spectrum(rng, num_samples, band, sample_rate)
    t = np.arange(num_samples) / sample_rate
    f_rot = rng.choice(_RPM) / 60.0
    swish = 1.0 + _uniform(rng, swish_depth) * np.sin(2 * np.pi * f_rot * t + rng.uniform(0, 2 * np.pi))
    return _unit(hiss * swish)


def crackle(rng, num_samples, sample_rate, rate_hz=(100.0, 3000.0), width_ms=(0.03, 0.4)):
    """Dense small impulses from dust and wear; heavy-tailed sizes, both polarities."""
    pos = _events(rng, num_samples, sample_rate, _log_uniform(rng, rate_hz))
    amp = rng.pareto(rng.uniform(1.5, 3.0), size=len(pos)) + 0.2
    amp *= rng.choice([-1.0, 1.0], size=len(pos))
    width = max(_uniform(rng, width_ms) * 1e-3 * sample_rate, 0.5)
    n = np.arange(int(6 * width) + 2)
    kernel = np.exp(-n / width) * np.cos(np.pi * n * rng.uniform(0.1, 0.6))
    return _unit(_place(num_samples, pos, amp, kernel))


def clicks(rng, num_samples, sample_rate, rate_hz=(0.5, 10.0), width_ms=(0.3, 3.0)):
    """Sparse loud clicks from scratches: damped ringing bursts."""
    pos = _events(rng, num_samples, sample_rate, _log_uniform(rng, rate_hz))
    amp = rng.uniform(0.3, 1.0, size=len(pos)) * rng.choice([-1.0, 1.0], size=len(pos))
    out = np.zeros(num_samples)
    for p, a in zip(pos, amp, strict=True):
        width = _uniform(rng, width_ms) * 1e-3 * sample_rate
        n = np.arange(int(5 * width) + 2)
        ring = rng.uniform(500.0, min(5000.0, sample_rate * 0.4)) / sample_rate
        kernel = a * np.exp(-n / width) * np.cos(2 * np.pi * ring * n)
        end = min(num_samples, p + len(kernel))
        out[p:end] += kernel[: end - p]
    # Scratches rarely come alone on a real record: keep a faint bed of hiss under them.
    return _unit(_unit(out) + 0.05 * white(rng, num_samples, sample_rate))


def rumble(rng, num_samples, sample_rate, cutoff_hz=(15.0, 80.0)):
    """Turntable bearing and motor rumble: strongly low-passed noise."""
    cutoff = _log_uniform(rng, cutoff_hz)
    lowpass = lambda f: 1.0 / (1.0 + (f / cutoff) ** 4) * (f > 5.0)
    return shape_spectrum(rng, num_samples, lowpass, sample_rate)


def thumps(rng, num_samples, sample_rate, freq_hz=(25.0, 120.0), decay_ms=(20.0, 120.0)):
    """Once-per-revolution thumps of a warped or cracked disc."""
    period = 60.0 / rng.choice(_RPM) * sample_rate
    start = rng.uniform(0, period)
    pos = np.arange(start, num_samples, period).astype(int)
    if len(pos) == 0:
        pos = np.array([int(rng.integers(0, num_samples))])
    pos = np.clip(pos + rng.integers(-20, 21, size=len(pos)), 0, num_samples - 1)
    decay = _uniform(rng, decay_ms) * 1e-3 * sample_rate
    n = np.arange(int(5 * decay) + 1)
    kernel = np.exp(-n / decay) * np.sin(2 * np.pi * _log_uniform(rng, freq_hz) / sample_rate * n)
    amp = rng.uniform(0.6, 1.0, size=len(pos))
    return _unit(_place(num_samples, pos, amp, kernel) + 0.02 * white(rng, num_samples, sample_rate))


def hum(rng, num_samples, sample_rate, mains_hz=(50.0, 60.0), harmonics=(3, 12), drift=(0.0, 0.003)):
    """Mains hum with harmonics; sometimes a buzz (odd harmonics strong)."""
    f0 = float(rng.choice(mains_hz)) * (1.0 + rng.uniform(-1, 1) * _uniform(rng, drift))
    t = np.arange(num_samples) / sample_rate
    wobble = 1.0 + _uniform(rng, drift) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t)
    phase = 2 * np.pi * f0 * np.cumsum(wobble) / sample_rate
    out = np.zeros(num_samples)
    slope = rng.uniform(0.5, 2.0)
    buzz = rng.random() < 0.4
    for k in range(1, int(rng.integers(harmonics[0], harmonics[1] + 1)) + 1):
        if k * f0 >= sample_rate / 2:
            break
        a = k ** (-slope) * (2.0 if buzz and k % 2 else 1.0) * rng.uniform(0.5, 1.0)
        out += a * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return _unit(out + 0.01 * white(rng, num_samples, sample_rate))


def film_hiss(rng, num_samples, sample_rate, grain_depth=(0.0, 0.4), buzz_level=(0.0, 0.3)):
    """Optical soundtrack noise: bright grain hiss flickering at the frame rate, perforation buzz."""
    tilt = rng.uniform(0.0, 1.0)
    hiss = shape_spectrum(rng, num_samples, lambda f: (np.maximum(f, 100.0) / 1000.0) ** (tilt / 2), sample_rate)
    t = np.arange(num_samples) / sample_rate
    fps = float(rng.choice(_FILM_FPS))
    flicker = 1.0 + _uniform(rng, grain_depth) * np.sign(np.sin(2 * np.pi * fps * t + rng.uniform(0, 2 * np.pi)))
    perforation = 4.0 * fps  # four perforations per frame
    buzz = sum(np.sin(2 * np.pi * k * perforation * t) / k for k in range(1, 6))
    return _unit(_unit(hiss * flicker) + _uniform(rng, buzz_level) * _unit(buzz))


def tape_hiss(rng, num_samples, sample_rate, corner_hz=(1000.0, 4000.0), modulation=(0.0, 0.3)):
    """Tape hiss rising above a corner frequency, with slow modulation noise."""
    corner = _log_uniform(rng, corner_hz)
    shelf = lambda f: np.sqrt(1.0 + (f / corner) ** 2) / np.sqrt(1.0 + (f / (4 * corner)) ** 2)
    hiss = shape_spectrum(rng, num_samples, shelf, sample_rate)
    slow = shape_spectrum(rng, num_samples, lambda f: 1.0 / (1.0 + (f / 8.0) ** 4), sample_rate)
    return _unit(hiss * np.clip(1.0 + _uniform(rng, modulation) * slow, 0.1, None))


GENERATORS: dict[str, NoiseFn] = {
    "white": white,
    "pink": pink,
    "brown": brown,
    "surface_hiss": surface_hiss,
    "crackle": crackle,
    "clicks": clicks,
    "rumble": rumble,
    "thumps": thumps,
    "hum": hum,
    "film_hiss": film_hiss,
    "tape_hiss": tape_hiss,
}


class NoiseMixture:
    """Draws 1..max_layers generators by weight and sums them at random relative levels.

    ``generators`` maps a generator name to ``{"weight": w, **params}``; weight 0 disables it.
    """

    def __init__(self, generators: dict[str, dict], max_layers: int = 3, layer_level_db=(-12.0, 0.0)):
        unknown = sorted(set(generators) - set(GENERATORS))
        if unknown:
            raise ValueError(f"unknown noise generator(s) {unknown}; known: {sorted(GENERATORS)}")
        self.names = [n for n, spec in generators.items() if spec.get("weight", 0) > 0]
        if not self.names:
            raise ValueError("data.noise.generators: every weight is 0, nothing to draw noise from")
        weights = np.array([generators[n]["weight"] for n in self.names], dtype=float)
        self.probs = weights / weights.sum()
        self.params = {n: {k: v for k, v in generators[n].items() if k != "weight"} for n in self.names}
        self.max_layers = max(1, min(max_layers, len(self.names)))
        self.layer_level_db = layer_level_db

    def __call__(self, rng: np.random.Generator, num_samples: int, sample_rate: int) -> tuple[np.ndarray, str]:
        layers = int(rng.integers(1, self.max_layers + 1))
        picked = rng.choice(len(self.names), size=layers, replace=False, p=self.probs)
        out = np.zeros(num_samples)
        for rank, i in enumerate(picked):
            name = self.names[i]
            level = 0.0 if rank == 0 else rng.uniform(*self.layer_level_db)
            out += 10 ** (level / 20) * GENERATORS[name](rng, num_samples, sample_rate, **self.params[name])
        label = "+".join(sorted(self.names[i] for i in picked))
        return _unit(out), label
