"""Procedural speech-like audio, so the suite trains with nothing downloaded.

Source-filter synthesis: a band-limited glottal pulse train with a moving pitch contour
and a noise source are shaped frame by frame in the STFT domain by a formant envelope
(vowels gliding between targets) or a fricative band. Syllables alternate with pauses at
a speaking rhythm drawn per "speaker". Every draw comes from the numpy Generator passed
in, so a clip is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from lightning_app.data.dsp import istft, stft

# Formant targets (F1, F2, F3) in Hz for adult vowels; speakers scale them.
_VOWELS = np.array(
    [
        [730, 1090, 2440],  # a
        [270, 2290, 3010],  # i
        [300, 870, 2240],  # u
        [530, 1840, 2480],  # e
        [570, 840, 2410],  # o
        [660, 1720, 2410],  # ae
        [440, 1020, 2240],  # schwa-like
        [390, 1990, 2550],  # I
        [640, 1190, 2390],  # uh
        [490, 1350, 1690],  # er
    ],
    dtype=np.float64,
)

_N_FFT = 512
_HOP = 128


@dataclass(frozen=True)
class SpeechConfig:
    """Ranges the generator draws from; defaults cover adult and child-like voices."""

    f0_range_hz: tuple[float, float] = (80.0, 300.0)
    formant_scale: tuple[float, float] = (0.85, 1.25)
    syllables_per_s: tuple[float, float] = (3.0, 6.5)
    pause_probability: float = 0.15
    fricative_probability: float = 0.45
    breathiness: tuple[float, float] = (0.0, 0.25)
    fricative_level_db: tuple[float, float] = (-22.0, -8.0)


def _polyblep_saw(phase: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Sawtooth from a running phase in cycles with polyBLEP anti-aliasing at the wraps."""
    p = phase % 1.0
    saw = 2.0 * p - 1.0
    dt = np.clip(dt, 1e-6, 0.5)
    head = p < dt
    t = p[head] / dt[head]
    saw[head] -= t + t - t * t - 1.0
    tail = p > 1.0 - dt
    t = (p[tail] - 1.0) / dt[tail]
    saw[tail] -= t * t + t + t + 1.0
    return -saw  # falling edge first, like a glottal closure


def _formant_envelope(
    freqs: np.ndarray, formants: np.ndarray, bandwidths: np.ndarray, levels_db: np.ndarray, floor_db: float
) -> np.ndarray:
    """Parallel formant model: resonance peaks (frames, K) at relative levels on a spectral floor.

    (A cascade of resonators normalised at DC falls by 12 dB/octave per formant above F4,
    which made the generated speech far duller than real speech above 2.5 kHz.)
    """
    f = freqs[None, None, :].astype(np.float32)
    half = 0.5 * bandwidths[:, :, None].astype(np.float32)
    gains = (10 ** (levels_db[None, :, None] / 20)).astype(np.float32)
    peaks = gains / np.sqrt(1.0 + ((f - formants[:, :, None].astype(np.float32)) / half) ** 2)
    return np.float32(10 ** (floor_db / 20)) + peaks.sum(axis=1)


@dataclass(frozen=True)
class Speaker:
    """Who speaks: what is drawn once per clip."""

    f0_hz: float  # base pitch
    tract_scale: float  # formant frequencies scale with vocal-tract length
    syllables_per_s: float
    breathiness: float
    fricative_gain: float


@dataclass
class SyllablePlan:
    """Frame by frame: how loud the voiced and fricative sources are, where the fricatives sit and which
    formants shape the voice; and the pitch targets (time, Hz) of the syllables' accents."""

    frame_t: np.ndarray
    voiced_amp: np.ndarray
    fricative_amp: np.ndarray
    fricative_centre_hz: np.ndarray
    formants: np.ndarray  # (frames, 5) Hz
    f0_knots: tuple[list[float], list[float]]


def synthesize_speech(
    rng: np.random.Generator, num_samples: int, sample_rate: int, config: SpeechConfig = SpeechConfig()
) -> np.ndarray:
    """One clip of speech-like audio, float32, peak-normalised to a random level."""
    for _ in range(4):
        clip = _synthesize_once(rng, num_samples, sample_rate, config)
        if np.any(clip):
            return clip
    return clip


def _synthesize_once(
    rng: np.random.Generator, num_samples: int, sample_rate: int, config: SpeechConfig
) -> np.ndarray:
    """A speaker, the syllables they say, their vocal tract and pitch, then the sound (in that order of draws,
    so a clip stays the pure function of its seed it always was)."""
    speaker = draw_speaker(rng, config)
    plan = plan_syllables(rng, speaker, num_samples, sample_rate, config)
    bandwidths, levels_db = _vocal_tract(rng, plan, sample_rate)
    f0 = pitch_contour(rng, plan, num_samples, sample_rate)
    return render(rng, speaker, plan, bandwidths, levels_db, f0, sample_rate)


def draw_speaker(rng: np.random.Generator, config: SpeechConfig) -> Speaker:
    return Speaker(
        f0_hz=float(np.exp(rng.uniform(np.log(config.f0_range_hz[0]), np.log(config.f0_range_hz[1])))),
        tract_scale=rng.uniform(*config.formant_scale),
        syllables_per_s=rng.uniform(*config.syllables_per_s),
        breathiness=rng.uniform(*config.breathiness),
        fricative_gain=10 ** (rng.uniform(*config.fricative_level_db) / 20),
    )


def plan_syllables(
    rng: np.random.Generator, speaker: Speaker, num_samples: int, sample_rate: int, config: SpeechConfig
) -> SyllablePlan:
    """Syllables (fricative or plosive onset, vowel nucleus gliding from the last vowel, fricative coda)
    and pauses at the speaker's rhythm, laid out on the STFT frames."""
    n_frames = num_samples // _HOP + 1
    frame_t = np.arange(n_frames) * _HOP / sample_rate
    duration = num_samples / sample_rate
    vt_scale = speaker.tract_scale
    voiced_amp = np.zeros(n_frames)
    fric_amp = np.zeros(n_frames)
    fric_centre = np.full(n_frames, 4000.0)
    formants = np.zeros((n_frames, 5))
    f0_knots_t, f0_knots_v = [0.0], [speaker.f0_hz * rng.uniform(0.9, 1.15)]

    prev_vowel = _VOWELS[rng.integers(len(_VOWELS))]
    # Start a little before the clip so crops begin mid-utterance as often as not.
    t = -rng.uniform(0.0, 0.3)
    paused = False
    while t < duration:
        if not paused and rng.random() < config.pause_probability:
            t += rng.uniform(0.06, 0.45)
            paused = True  # never two pauses in a row: a clip is never all silence
            continue
        paused = False
        syl = rng.uniform(0.6, 1.5) / speaker.syllables_per_s
        onset = rng.uniform(0.03, 0.12) if rng.random() < config.fricative_probability else 0.0
        coda = rng.uniform(0.03, 0.1) if rng.random() < config.fricative_probability * 0.5 else 0.0
        nucleus = max(syl - onset - coda, 0.05)
        level = rng.uniform(0.4, 1.0)

        if onset:
            sel = (frame_t >= t) & (frame_t < t + onset)
            fric_amp[sel] = np.maximum(fric_amp[sel], level * rng.uniform(0.15, 0.6))
            fric_centre[sel] = rng.uniform(2500, 7000)
        elif rng.random() < 0.5:
            # A plosive: a short broadband burst just before the vowel.
            sel = (frame_t >= t) & (frame_t < t + rng.uniform(0.01, 0.03))
            fric_amp[sel] = np.maximum(fric_amp[sel], level * rng.uniform(0.3, 0.9))
            fric_centre[sel] = rng.uniform(1500, 5000)
        v0, v1 = t + onset, t + onset + nucleus
        sel = (frame_t >= v0) & (frame_t < v1)
        if sel.any():
            u = (frame_t[sel] - v0) / nucleus
            # Smooth rise and fall of the vowel's loudness.
            env = np.sin(np.pi * np.clip(u, 0, 1)) ** 0.6
            voiced_amp[sel] = np.maximum(voiced_amp[sel], level * env)
            vowel = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.92, 1.08, size=3)
            glide = np.clip(u / rng.uniform(0.3, 0.8), 0, 1)[:, None]
            f123 = (prev_vowel * (1 - glide) + vowel * glide) * vt_scale
            formants[sel, :3] = f123
            formants[sel, 3] = 3300 * vt_scale
            formants[sel, 4] = 4500 * vt_scale
            prev_vowel = vowel
            # Pitch accent: rise or fall within the syllable, with a slow declination.
            decl = 1.0 - 0.15 * max(v0, 0.0) / max(duration, 1e-3)
            f0_knots_t += [v0, (v0 + v1) / 2, v1]
            f0_knots_v += [speaker.f0_hz * decl * rng.uniform(0.85, 1.2) for _ in range(3)]
        if coda:
            sel = (frame_t >= v1) & (frame_t < v1 + coda)
            fric_amp[sel] = np.maximum(fric_amp[sel], level * rng.uniform(0.1, 0.4))
            fric_centre[sel] = rng.uniform(2500, 7000)
        t = v1 + coda + rng.uniform(0.0, 0.05)

    # Frames between vowels keep the last formants so the envelope never collapses.
    empty = formants[:, 0] == 0
    if empty.all():
        formants[:] = np.append(_VOWELS[0], [3300, 4500]) * vt_scale
    else:
        idx = np.where(~empty, np.arange(n_frames), 0)
        np.maximum.accumulate(idx, out=idx)
        first = np.argmax(~empty)
        idx[:first] = first
        formants = formants[idx]
    return SyllablePlan(
        frame_t,
        voiced_amp,
        fric_amp,
        fric_centre,
        np.minimum(formants, sample_rate / 2 * 0.9),
        (f0_knots_t, f0_knots_v),
    )


def _vocal_tract(
    rng: np.random.Generator, plan: SyllablePlan, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Formant bandwidths (frames, 5) and relative levels (dB) of this speaker's tract."""
    bandwidths = (50 + 0.06 * plan.formants) * rng.uniform(0.8, 1.6)
    levels_db = np.array([0.0, -3.0, -6.0, -10.0, -14.0]) + rng.uniform(-4, 4, size=5)
    levels_db[0] = 0.0
    return bandwidths, levels_db


def pitch_contour(
    rng: np.random.Generator, plan: SyllablePlan, num_samples: int, sample_rate: int
) -> np.ndarray:
    """f0 per sample: the accents' targets joined, a little vibrato and a slow random jitter."""
    knots_t, knots_v = plan.f0_knots
    order = np.argsort(knots_t)
    times = np.arange(num_samples) / sample_rate
    f0 = np.interp(times, np.asarray(knots_t)[order], np.asarray(knots_v)[order])
    f0 *= 1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * times + rng.uniform(0, 2 * np.pi))
    f0 *= np.exp(np.cumsum(rng.normal(0, 0.0008, num_samples)).clip(-0.08, 0.08))
    return f0


def render(
    rng: np.random.Generator,
    speaker: Speaker,
    plan: SyllablePlan,
    bandwidths: np.ndarray,
    levels_db: np.ndarray,
    f0: np.ndarray,
    sample_rate: int,
) -> np.ndarray:
    """Source-filter synthesis on the STFT frames: a glottal pulse train through the formants (with
    aspiration) plus shaped fricative noise, a random spectral tilt and microphone colour, at a random
    level."""
    num_samples, n_frames = len(f0), len(plan.frame_t)
    dt = f0 / sample_rate
    excitation = _polyblep_saw(np.cumsum(dt) + rng.random(), dt)
    noise = rng.standard_normal(num_samples, dtype=np.float32)

    freqs = np.fft.rfftfreq(_N_FFT, 1.0 / sample_rate)
    exc_spec = stft(excitation, _N_FFT, _HOP)[:n_frames]
    noise_spec = stft(noise, _N_FFT, _HOP)[:n_frames]
    vowel_env = _formant_envelope(freqs, plan.formants, bandwidths, levels_db, floor_db=rng.uniform(-36, -26))
    # The sawtooth's -6 dB/octave stands for glottal source plus lip radiation; voices vary
    # from pressed (flat) to breathy (steeper), so add a random extra tilt of 0..6 dB/octave.
    tilt = ((1.0 + (freqs / rng.uniform(500, 2500)) ** 2) ** (-rng.uniform(0.0, 0.5))).astype(np.float32)
    voiced = exc_spec * vowel_env * tilt
    voiced *= plan.voiced_amp[:, None]
    aspiration = noise_spec * vowel_env * tilt * (speaker.breathiness * plan.voiced_amp)[:, None] * 0.3
    centre = plan.fricative_centre_hz[:, None]
    fric_band = np.exp(-0.5 * ((freqs[None] - centre) / (0.35 * centre)) ** 2)
    fricative = noise_spec * (fric_band + 0.1) * plan.fricative_amp[:, None] * speaker.fricative_gain

    spec = voiced + aspiration + fricative
    out = istft(spec, _N_FFT, _HOP, num_samples)
    out = _random_coloration(rng, out, sample_rate)
    peak = np.max(np.abs(out))
    if peak < 1e-8:
        return np.zeros(num_samples, dtype=np.float32)
    return (out / peak * rng.uniform(0.3, 0.9)).astype(np.float32)


def _random_coloration(rng: np.random.Generator, x: np.ndarray, sample_rate: int) -> np.ndarray:
    """A gentle random microphone/room tilt so every 'recording' sounds a bit different."""
    spec = sfft.rfft(x.astype(np.float32))
    freqs = np.fft.rfftfreq(len(x), 1.0 / sample_rate)
    octaves = np.log2(np.maximum(freqs, 50.0) / 1000.0)
    gain_db = rng.uniform(-3, 3) * octaves + rng.uniform(-4, 4) * np.exp(
        -0.5 * ((octaves - rng.uniform(-1.5, 2)) / 0.7) ** 2
    )
    highpass = 1.0 / np.sqrt(1.0 + (rng.uniform(50, 200) / np.maximum(freqs, 1.0)) ** 4)
    return sfft.irfft(spec * (10 ** (gain_db / 20) * highpass).astype(np.float32), n=len(x))
