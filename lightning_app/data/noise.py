"""Procedural degradations of historical recordings.

Each generator is ``fn(rng, num_samples, sample_rate, **params) -> float64 array`` with
unit RMS (the mixer sets the level from the SNR), so generators can be summed at
relative levels. Parameters are ranges the generator draws from; their defaults live in
``configs/defaults.yaml`` under ``data.noise.procedural.generators``.

Every physical quantity is in Hz or seconds, never in samples or fractions of the rate: a
spectrum is defined in Hz and evaluated on the rate's own frequency grid up to Nyquist, so a
generator at 44.1 kHz equals the 16 kHz one below 8 kHz and adds the top octaves the physics
puts there (impulses and hiss are broadband), without aliasing. Each generator draws all its
parameters before any noise array (whose size depends on the rate), so a seed gives the same
degradation, event times included, at every rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as sfft
from scipy.signal import oaconvolve

from lightning_app.data.dsp import rms, shape_spectrum

NoiseFn = Callable[..., np.ndarray]

# Record and film speeds that set the periodicities of thumps, swish and perforation buzz.
_RPM = (78.0, 45.0, 33.333)
_FILM_FPS = (24.0, 25.0)
# The band every rate has (16 kHz's). Levels between the parts of a degradation, or between mixture layers,
# are set on their power below it, so a wider band adds top octaves without shifting any level below 8 kHz.
_REF_TOP_HZ = 8000.0
# A damped stylus, cantilever and arm ring with Q <= ~8: a resonance at f Hz decays within Q / (pi f) s,
# so a ring high in the band is short (crackle at 16 kHz: <= 0.16 ms), never a long tonal ping.
_MAX_Q = 8.0


def _unit(x: np.ndarray) -> np.ndarray:
    level = rms(x)
    return x / level if level > 1e-12 else x


def _uniform(rng: np.random.Generator, bounds, size=None):
    lo, hi = bounds
    x = rng.uniform(lo, hi, size=size)
    return float(x) if size is None else x


def _log_uniform(rng: np.random.Generator, bounds, size=None):
    lo, hi = bounds
    x = np.exp(rng.uniform(np.log(lo), np.log(hi), size=size))
    return float(x) if size is None else x


def _events(
    rng: np.random.Generator, num_samples: int, sample_rate: int, rate_hz: float, minimum: int = 1
) -> np.ndarray:
    """Poisson event positions; at least ``minimum`` so a short clip is never noise-free.

    Drawn as fractions of the clip, so a seed puts its events at the same seconds at every rate.
    """
    count = max(int(rng.poisson(rate_hz * num_samples / sample_rate)), minimum)
    return (rng.random(count) * num_samples).astype(np.int64)


def _rms_below(x: np.ndarray, sample_rate: int, top_hz: float = _REF_TOP_HZ) -> float:
    """RMS of ``x`` below ``top_hz`` (Parseval on its rfft); the plain RMS when the band ends below it."""
    if sample_rate / 2 <= top_hz:
        return rms(x)
    spec = sfft.rfft(x.astype(np.float32))
    keep = np.abs(spec[: int(top_hz * len(x) / sample_rate) + 1]) ** 2
    return float(np.sqrt((2 * keep.sum() - keep[0]) / len(x) ** 2))


def _floor(rng: np.random.Generator, num_samples: int, sample_rate: int, level: float) -> np.ndarray:
    """Faint white floor of RMS ``level`` in 0-8 kHz: the same density per Hz at every rate."""
    return level * np.sqrt(sample_rate / 2 / _REF_TOP_HZ) * rng.standard_normal(num_samples)


def _freqs(length: int, sample_rate: int) -> np.ndarray:
    return np.fft.rfftfreq(length, 1.0 / sample_rate)


def _power_below(gain, num_samples: int, sample_rate: int, top_hz: float = _REF_TOP_HZ) -> float:
    """Fraction of the power of noise shaped by ``gain`` (as :func:`shape_spectrum` makes it) below
    ``top_hz``."""
    f = _freqs(num_samples, sample_rate)
    g2 = np.abs(gain(f)) ** 2
    return float(g2[f <= top_hz].sum() / max(g2.sum(), 1e-30))


def _damped_cosine(freqs: np.ndarray, decay_s, ring_hz) -> np.ndarray:
    """Spectrum of exp(-t/decay) cos(2 pi ring t), t >= 0: a resonance struck by a kick.

    It starts at its peak (a sharp edge), so far above the ring it falls only 6 dB/octave:
    broadband, as an impulse is. Evaluated analytically in Hz, it is band-limited at any rate.
    """
    s = 1.0 / decay_s + 2j * np.pi * freqs
    return s / (s * s + (2 * np.pi * ring_hz) ** 2)


def _bandlimited_kernels(spectra: np.ndarray, length: int, lead: int) -> np.ndarray:
    """Time-domain kernels from spectra on the rfft grid of ``length``, onset moved to sample ``lead``.

    The lead keeps the pre-ringing of the band-limited onset (what a linear-phase converter records
    in front of a click) instead of wrapping it onto the tail.
    """
    shift = np.exp(-2j * np.pi * np.arange(spectra.shape[-1]) * lead / length)
    return sfft.irfft(spectra * shift, n=length, axis=-1)


def colored(rng, num_samples, sample_rate, exponent=(0.0, 0.0)):
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown), defined in Hz."""
    beta = _uniform(rng, exponent)
    return shape_spectrum(rng, num_samples, lambda f: np.maximum(f, 20.0) ** (-beta / 2), sample_rate)


def white(rng, num_samples, sample_rate):
    """Flat to Nyquist at every rate (white needs no spectral shaping)."""
    return _unit(rng.standard_normal(num_samples))


def pink(rng, num_samples, sample_rate, exponent=(0.8, 1.2)):
    return colored(rng, num_samples, sample_rate, exponent)


def brown(rng, num_samples, sample_rate, exponent=(1.7, 2.2)):
    return colored(rng, num_samples, sample_rate, exponent)


def surface_hiss(
    rng,
    num_samples,
    sample_rate,
    centre_hz=(1500.0, 6000.0),
    swish_depth=(0.0, 0.5),
    max_slope_db_oct=(3.0, 9.0),
):
    """Groove noise of a shellac/vinyl record: broad band-pass hiss that swells once per turn.

    A log-normal bump around ``centre_hz`` (1-2.5 octaves wide); above the centre the skirt falls no
    faster than ``max_slope_db_oct``: the stylus keeps tracing groove-wall roughness up the band, so
    the far treble skirt is a power law reaching the top octave, not a Gaussian that dies by 10 kHz.
    """
    centre = _log_uniform(rng, centre_hz)
    width = rng.uniform(1.0, 2.5)  # octaves
    slope = _uniform(rng, max_slope_db_oct)
    f_rot = rng.choice(_RPM) / 60.0
    depth = _uniform(rng, swish_depth)
    phase = rng.uniform(0, 2 * np.pi)
    db_per_oct2 = 10 * np.log10(np.e) / width**2  # Gaussian power drop: db_per_oct2 * octaves**2 dB
    knee = slope / (2 * db_per_oct2)  # octaves above the centre where the Gaussian gets as steep as ``slope``

    def band(f):
        x = np.log2(np.maximum(f, 1.0) / centre)
        above = np.clip(x, 0.0, None)
        drop_db = np.where(
            x < 0,
            db_per_oct2 * x**2,
            np.where(above < knee, db_per_oct2 * above**2, db_per_oct2 * knee**2 + slope * (above - knee)),
        )
        return 10 ** (-drop_db / 20)

    hiss = shape_spectrum(rng, num_samples, band, sample_rate)
    t = np.arange(num_samples) / sample_rate
    return _unit(hiss * (1.0 + depth * np.sin(2 * np.pi * f_rot * t + phase)))


def crackle(
    rng, num_samples, sample_rate, rate_hz=(100.0, 3000.0), width_ms=(0.03, 0.4), ring_hz=(1000.0, 12000.0)
):
    """Dense small impulses from dust and wear; heavy-tailed sizes, both polarities.

    A dust particle kicks the stylus almost instantly; each kick rings the pickup's resonance (tip-mass
    resonances of 78 and LP styli: ~1-12 kHz) at ``ring_hz`` for ``width_ms`` (decay time, Q <= 8). The
    kernel's spectrum is applied in Hz up to Nyquist, so the crackle's energy sits at the same Hz at every
    rate and reaches the top octave at 44.1/48 kHz; a resonance above Nyquist leaves its rising skirt, as a
    band-limited recording of it would.
    """
    rate = _log_uniform(rng, rate_hz)
    ring = _log_uniform(rng, ring_hz)
    decay = min(_uniform(rng, width_ms) * 1e-3, _MAX_Q / (np.pi * ring))
    tail = rng.uniform(1.5, 3.0)
    pos = _events(rng, num_samples, sample_rate, rate)
    amp = (rng.pareto(tail, size=len(pos)) + 0.2) * rng.choice([-1.0, 1.0], size=len(pos))
    # Room for the last kicks to ring out (and the first ones' pre-ringing) instead of wrapping around.
    length = sfft.next_fast_len(num_samples + int(10 * decay * sample_rate) + 64, real=True)
    impulses = np.bincount(pos, weights=amp, minlength=length)
    spec = sfft.rfft(impulses) * _damped_cosine(_freqs(length, sample_rate), decay, ring)
    return _unit(sfft.irfft(spec, n=length)[:num_samples])


def clicks(
    rng,
    num_samples,
    sample_rate,
    rate_hz=(0.5, 10.0),
    width_ms=(0.3, 3.0),
    ring_hz=(500.0, 8000.0),
    edge_ms=(0.01, 0.05),
):
    """Sparse loud clicks from scratches: a sharp edge and the damped ringing it excites.

    The scratch wall throws the stylus within ``edge_ms`` (10-50 us: flat to 3-16 kHz, then 6 dB/octave,
    so a click is broadband to the top octave); it then rings at ``ring_hz`` for ``width_ms`` (Q <= 8).
    Each click is built from its spectrum in Hz, so it is the same click at every rate, band-limited
    without aliasing.
    """
    pos = _events(rng, num_samples, sample_rate, _log_uniform(rng, rate_hz))
    count = len(pos)
    amp = rng.uniform(0.3, 1.0, size=count) * rng.choice([-1.0, 1.0], size=count)
    decay = _uniform(rng, width_ms, size=count)[:, None] * 1e-3
    ring = _log_uniform(rng, ring_hz, size=count)[:, None]
    decay = np.minimum(decay, _MAX_Q / (np.pi * ring))
    edge = _log_uniform(rng, edge_ms, size=count)[:, None] * 1e-3
    edge_level = rng.uniform(0.5, 1.5, size=count)[:, None]
    lead = 64  # samples of pre-ringing kept in front of each onset
    length = sfft.next_fast_len(lead + int(8 * decay.max() * sample_rate) + 1, real=True)
    f = _freqs(length, sample_rate)
    spectra = amp[:, None] * (edge_level * _damped_cosine(f, edge, 0.0) + _damped_cosine(f, decay, ring))
    kernels = _bandlimited_kernels(spectra, length, lead)
    index = pos[:, None] + np.arange(length)[None, :]
    out = np.bincount(index.ravel(), weights=kernels.ravel(), minlength=num_samples + length)[
        lead : lead + num_samples
    ]
    # Scratches rarely come alone on a real record: keep a faint bed of hiss under them, its level set against
    # the clicks' power in 0-8 kHz (the part every rate has), so the bed sits equally low at every rate.
    power = np.abs(spectra) ** 2
    below = power[:, f <= _REF_TOP_HZ].sum() / max(power.sum(), 1e-30)
    return _unit(_unit(out) / np.sqrt(below) + _floor(rng, num_samples, sample_rate, 0.05))


def rumble(rng, num_samples, sample_rate, cutoff_hz=(15.0, 80.0)):
    """Turntable bearing and motor rumble: strongly low-passed noise."""
    cutoff = _log_uniform(rng, cutoff_hz)
    lowpass = lambda f: 1.0 / (1.0 + (f / cutoff) ** 4) * (f > 5.0)
    return shape_spectrum(rng, num_samples, lowpass, sample_rate)


def thumps(rng, num_samples, sample_rate, freq_hz=(25.0, 120.0), decay_ms=(20.0, 120.0)):
    """Once-per-revolution thumps of a warped or cracked disc."""
    period = 60.0 / rng.choice(_RPM)  # seconds
    start = rng.uniform(0, period)
    decay = _uniform(rng, decay_ms) * 1e-3
    freq = _log_uniform(rng, freq_hz)
    times = np.arange(start, num_samples / sample_rate, period)
    if len(times) == 0:
        times = rng.uniform(0, num_samples / sample_rate, size=1)
    # Speed wobble moves each thump by up to ~1 ms: a time, so the same at every rate (never a count of
    # samples).
    times = times + rng.uniform(-1.25e-3, 1.25e-3, size=len(times))
    amp = rng.uniform(0.6, 1.0, size=len(times))
    pos = np.clip((times * sample_rate).astype(np.int64), 0, num_samples - 1)
    n = np.arange(int(5 * decay * sample_rate) + 1) / sample_rate
    kernel = np.exp(-n / decay) * np.sin(2 * np.pi * freq * n)
    impulses = np.bincount(pos, weights=amp, minlength=num_samples)
    # A warped disc thumps over its own surface: a faint bed 26 dB under the thumps (all below 8 kHz).
    return _unit(
        _unit(oaconvolve(impulses, kernel)[:num_samples]) + _floor(rng, num_samples, sample_rate, 0.05)
    )


def hum(rng, num_samples, sample_rate, mains_hz=(50.0, 60.0), harmonics=(3, 40), drift=(0.0, 0.003)):
    """Mains hum with harmonics; sometimes a buzz (odd harmonics strong).

    The harmonic count is drawn independently of the rate; harmonics at or above Nyquist are dropped.
    """
    f0 = float(rng.choice(mains_hz)) * (1.0 + rng.uniform(-1, 1) * _uniform(rng, drift))
    depth = _uniform(rng, drift)
    wobble_hz = rng.uniform(0.05, 0.5)
    slope = rng.uniform(0.5, 2.0)
    buzz = rng.random() < 0.4
    k = np.arange(1, int(rng.integers(harmonics[0], harmonics[1] + 1)) + 1)
    amp = k ** (-slope) * np.where(buzz & (k % 2 == 1), 2.0, 1.0) * rng.uniform(0.5, 1.0, size=len(k))
    phases = rng.uniform(0, 2 * np.pi, size=len(k))
    amp[k * f0 >= sample_rate / 2] = 0.0
    t = np.arange(num_samples) / sample_rate
    phase = 2 * np.pi * f0 * np.cumsum(1.0 + depth * np.sin(2 * np.pi * wobble_hz * t)) / sample_rate
    # sum_k a_k sin(k phase + p_k) = Im(sum_k c_k z^k), z = e^{i phase}: Horner's rule, one complex exp.
    z = np.exp(1j * phase)
    acc = np.zeros(num_samples, dtype=complex)
    for c in (amp * np.exp(1j * phases))[::-1]:
        acc = (acc + c) * z
    return _unit(acc.imag + _floor(rng, num_samples, sample_rate, 0.01))


def film_hiss(
    rng,
    num_samples,
    sample_rate,
    grain_depth=(0.0, 0.4),
    buzz_level=(0.0, 0.3),
    bandwidth_hz=(6000.0, 14000.0),
):
    """Optical soundtrack noise: bright grain hiss flickering at the frame rate, perforation buzz.

    Grain hiss rises with frequency (power ~ f^tilt above 100 Hz) up to the reproducer's band edge
    ``bandwidth_hz``, where the scanning slit's aperture loss rolls it off (12 dB/octave, -3 dB at the
    edge; 35 mm optical reaches ~8-14 kHz): without it the tilt would keep rising to 24 kHz at 48 kHz.
    """
    tilt = rng.uniform(0.0, 1.0)
    top = _log_uniform(rng, bandwidth_hz)
    fps = float(rng.choice(_FILM_FPS))
    depth = _uniform(rng, grain_depth)
    flicker_phase = rng.uniform(0, 2 * np.pi)
    level = _uniform(rng, buzz_level)
    buzz_phase = rng.uniform(0, 2 * np.pi)  # the film does not start on a perforation edge
    shape = lambda f: (np.maximum(f, 100.0) / 1000.0) ** (tilt / 2) / np.sqrt(1.0 + (f / top) ** 4)
    # The buzz level is relative to the hiss in 0-8 kHz, not to its full band, which grows with the rate.
    hiss = shape_spectrum(rng, num_samples, shape, sample_rate) / np.sqrt(
        _power_below(shape, num_samples, sample_rate)
    )
    t = np.arange(num_samples) / sample_rate
    flicker = 1.0 + depth * np.sign(np.sin(2 * np.pi * fps * t + flicker_phase))
    perforation = (
        4.0 * fps
    )  # four perforations per frame: 96/100 Hz, harmonics to 500 Hz (below Nyquist at any rate)
    z = np.exp(1j * (2 * np.pi * perforation * t + buzz_phase))
    zk, buzz = z, np.zeros(num_samples)
    for k in range(1, 6):
        buzz += zk.imag / k
        zk = zk * z
    return _unit(hiss * flicker + level * _unit(buzz))


def tape_hiss(
    rng,
    num_samples,
    sample_rate,
    corner_hz=(1000.0, 4000.0),
    modulation=(0.0, 0.3),
    bandwidth_hz=(10000.0, 20000.0),
):
    """Tape hiss: a shelf rising 12 dB above ``corner_hz``, flat, then rolling off at the recorder's band
    edge.

    Tape hiss is bright: it stays up to the top of the machine's band (``bandwidth_hz``: ~10 kHz at
    3.75 ips, ~15 kHz at 7.5 ips, ~20 kHz at 15 ips), where head-gap loss rolls it off at 12 dB/octave.
    Slow modulation noise (below ~8 Hz) swells it.
    """
    corner = _log_uniform(rng, corner_hz)
    top = _log_uniform(rng, bandwidth_hz)
    depth = _uniform(rng, modulation)
    shelf = lambda f: np.sqrt(
        (1.0 + (f / corner) ** 2) / (1.0 + (f / (4 * corner)) ** 2) / (1.0 + (f / top) ** 4)
    )
    hiss = shape_spectrum(rng, num_samples, shelf, sample_rate)
    slow = shape_spectrum(rng, num_samples, lambda f: 1.0 / (1.0 + (f / 8.0) ** 4), sample_rate)
    return _unit(hiss * np.clip(1.0 + depth * slow, 0.1, None))


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
    The recipe (layers, levels, each layer's parameters) is drawn before any noise, and each layer
    runs on its own child generator, so a seed gives the same mixture at every rate and length.
    Relative levels are set on each layer's power in 0-8 kHz, the band every rate has: a wider band
    adds a broadband layer's top octaves without turning it down against rumble or hum below 8 kHz.
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

    def __call__(
        self, rng: np.random.Generator, num_samples: int, sample_rate: int
    ) -> tuple[np.ndarray, str]:
        layers = int(rng.integers(1, self.max_layers + 1))
        picked = rng.choice(len(self.names), size=layers, replace=False, p=self.probs)
        levels = np.concatenate([[0.0], rng.uniform(*self.layer_level_db, size=layers - 1)])
        seeds = rng.integers(0, 2**63 - 1, size=layers)
        out = np.zeros(num_samples)
        for i, level, seed in zip(picked, levels, seeds, strict=True):
            name = self.names[i]
            noise = GENERATORS[name](
                np.random.default_rng(seed), num_samples, sample_rate, **self.params[name]
            )
            out += 10 ** (level / 20) / max(_rms_below(noise, sample_rate), 1e-12) * noise
        label = "+".join(sorted(self.names[i] for i in picked))
        return _unit(out), label
