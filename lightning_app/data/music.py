"""Procedural music, the twin of the procedural speech source: nothing downloaded, any rate up to 48 kHz.

A clip is a pure function of the numpy Generator passed in:

1. a **score** (:func:`plan_music`): key and scale, a chord progression, metre and tempo, a melody
   over a bass line and chord voices (1-6 monophonic voices in all), phrasing (legato/staccato),
   phrase dynamics and rests, optionally light percussion;
2. **rendering** (:func:`render_music`): each voice is played by one instrument family with its own
   small physical model — struck strings (inharmonic partials, per-partial two-stage decay, hammer
   noise, damper), plucked strings, bowed strings (slow attack, vibrato through body resonances, bow
   noise), reeds and brass (harmonic spectra under formant-like envelopes, breath noise, brass brighter
   when loud), organ (drawbar stops), sung voice (vowel formants, singer's formant, vibrato) and
   percussion (kick, snare, brushes, hi-hat, ride).

Harmonic partials are written straight into a short-time spectrum (each partial a Hann-window main
lobe at its frequency, with its phase integrated frame by frame) and the whole mix comes back with
one inverse STFT: cost grows with frames x partials, not with samples x partials, so a 3-s clip at
44.1 kHz with six voices costs tens of milliseconds. Noise parts (breath, bow, hammer, drums) are
shaped in the time domain, so their attacks stay sharp.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from lightning_app.data.dsp import istft, shape_spectrum

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}
# Chord roots as scale degrees (0 = tonic): the progressions of hymns, dances, blues and popular song.
PROGRESSIONS = (
    (0, 3, 4, 0),
    (0, 5, 3, 4),
    (1, 4, 0, 0),
    (0, 3, 0, 4),
    (0, 4, 5, 3),
    (5, 3, 0, 4),
    (0, 0, 3, 3, 0, 0, 4, 0),
    (0, 5, 1, 4),
    (0, 2, 3, 4),
    (0, 6, 5, 4),
)
FAMILIES = ("piano", "plucked", "bowed", "reed", "brass", "organ", "voice")
# Playable MIDI ranges per family (low, high).
RANGES = {
    "piano": (28, 96),
    "plucked": (40, 84),
    "bowed": (36, 93),
    "reed": (50, 89),
    "brass": (40, 82),
    "organ": (36, 89),
    "voice": (43, 81),
}
# Vowel formants (F1, F2, F3) in Hz for singing: a, e, i, o, u and a darker operatic a.
_SUNG_VOWELS = np.array(
    [
        [750, 1200, 2600],
        [450, 1900, 2600],
        [300, 2200, 3000],
        [480, 850, 2600],
        [330, 800, 2500],
        [650, 1050, 2500],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class MusicConfig:
    """Ranges the generator draws from; defaults live in configs/defaults.yaml
    (data.clean.music.procedural)."""

    tempo_bpm: tuple[float, float] = (50.0, 180.0)
    voices: tuple[int, int] = (1, 6)
    family_weights: dict = field(
        default_factory=lambda: {
            "piano": 1.5,
            "plucked": 1.0,
            "bowed": 1.5,
            "reed": 1.0,
            "brass": 1.0,
            "organ": 0.6,
            "voice": 1.5,
        }
    )
    percussion_probability: float = 0.3
    staccato_probability: float = 0.3
    rest_probability: float = 0.12
    dynamics_db: tuple[float, float] = (-18.0, 0.0)
    vibrato_cents: tuple[float, float] = (5.0, 60.0)
    detune_cents: tuple[float, float] = (-30.0, 30.0)  # old transfers are rarely at A = 440 Hz

    @classmethod
    def from_ranges(cls, **ranges) -> MusicConfig:
        return cls(
            **{
                k: tuple(v) if isinstance(v, list | tuple) else dict(v) if isinstance(v, dict) else v
                for k, v in ranges.items()
            }
        )


@dataclass(frozen=True)
class Note:
    voice: int
    family: str
    onset: float  # seconds from the clip start (may be negative: the piece began earlier)
    offset: float  # note-off (the sound may ring on: decay, release, room)
    midi: float
    velocity: float  # linear amplitude, 0..1


@dataclass(frozen=True)
class Hit:
    kind: str  # kick | snare | brush | hihat | ride
    onset: float
    velocity: float


@dataclass(frozen=True)
class Score:
    tuning_hz: float  # frequency of MIDI 69 (A4)
    tempo_bpm: float
    scale: str
    tonic: int
    notes: tuple[Note, ...]
    hits: tuple[Hit, ...]

    def frequency(self, midi: float) -> float:
        return self.tuning_hz * 2.0 ** ((midi - 69.0) / 12.0)

    @property
    def families(self) -> set[str]:
        return {n.family for n in self.notes}

    @property
    def voices(self) -> int:
        return len({n.voice for n in self.notes})


# ----------------------------------------------------------------------------- the score
def _pick_family(rng: np.random.Generator, config: MusicConfig, allowed=FAMILIES) -> str:
    names = [f for f in allowed if config.family_weights.get(f, 0.0) > 0]
    if not names:
        names = list(allowed)
    w = np.array([config.family_weights.get(f, 1.0) for f in names], dtype=float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _fit_range(midi: int, family: str) -> int:
    low, high = RANGES[family]
    while midi < low:
        midi += 12
    while midi > high:
        midi -= 12
    return midi


def plan_music(rng: np.random.Generator, seconds: float, config: MusicConfig = MusicConfig()) -> Score:
    """A short piece: melody, bass and chord voices over a progression, with phrasing and dynamics."""
    scale_name = list(SCALES)[int(rng.integers(len(SCALES)))]
    scale = SCALES[scale_name]
    tonic = int(rng.integers(0, 12))
    tempo = float(rng.uniform(*config.tempo_bpm))
    beat = 60.0 / tempo
    beats_per_bar = int(rng.choice([2, 3, 4, 4, 6]))
    chord_beats = beats_per_bar * int(rng.choice([1, 1, 2])) if beats_per_bar < 6 else 3
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    start = -float(rng.uniform(0.0, beats_per_bar * beat))  # crops begin mid-piece as often as not
    tuning = 440.0 * 2.0 ** (rng.uniform(*config.detune_cents) / 1200.0)

    def degree_to_midi(degree: int, register: int) -> int:
        """Scale degree counted from the tonic at or just below ``register`` (a MIDI note)."""
        octave, step = divmod(degree, len(scale))
        return register - (register - tonic) % 12 + 12 * octave + scale[step]

    chords = []  # (start, end, root degree)
    t, i = start, int(rng.integers(len(progression)))
    while t < seconds:
        chords.append((t, t + chord_beats * beat, progression[i % len(progression)]))
        t += chord_beats * beat
        i += 1

    def chord_at(time: float) -> int:
        for c0, c1, root in chords:
            if c0 <= time < c1:
                return root
        return chords[-1][2]

    n_voices = int(rng.integers(config.voices[0], config.voices[1] + 1))
    notes: list[Note] = []
    for voice in range(n_voices):
        role = "melody" if voice == 0 else "bass" if voice == 1 else "chord"
        family = _pick_family(rng, config)
        legato = rng.random() >= config.staccato_probability
        phrase_db = rng.uniform(*config.dynamics_db)
        crescendo_db = rng.uniform(-6.0, 6.0)  # over the clip
        register = {"melody": 60, "bass": 36, "chord": 48}[role] + int(rng.integers(-5, 8))
        if role == "melody":
            durations = np.array([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0])
            t, degree, rested = start, int(rng.integers(0, len(scale))), False
            while t < seconds:
                length = float(rng.choice(durations)) * beat
                if not rested and rng.random() < config.rest_probability:
                    t += length
                    rested = True  # never two rests in a row: a melody is never all silence
                    continue
                rested = False
                # Mostly steps, some leaps; strong beats lean on chord tones.
                degree += int(rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3, 4, -4]))
                if abs(((t - start) / beat) % 1.0) < 1e-6 and rng.random() < 0.5:
                    root = chord_at(t)
                    degree = (
                        root + int(rng.choice([0, 2, 4])) + len(scale) * round((degree - root) / len(scale))
                    )
                degree = int(np.clip(degree, -len(scale), 2 * len(scale)))
                midi = _fit_range(degree_to_midi(degree, register), family)
                notes.append(
                    _note(rng, voice, family, t, length, midi, legato, phrase_db, crescendo_db, seconds)
                )
                t += length
        else:
            pattern = (
                rng.choice(["sustain", "pulse", "arpeggio"])
                if role == "chord"
                else rng.choice(["sustain", "pulse"])
            )
            step = {
                "sustain": chord_beats,
                "pulse": float(rng.choice([1.0, 2.0])),
                "arpeggio": float(rng.choice([0.5, 1.0])),
            }[pattern] * beat
            tone = voice - 2  # which chord tone this voice holds
            t, k = start, 0
            while t < seconds:
                if rng.random() < config.rest_probability * 0.5:
                    t += step
                    k += 1
                    continue
                root = chord_at(t + 1e-6)
                if role == "bass":
                    degree = root + (4 if pattern == "pulse" and k % 2 else 0)
                elif pattern == "arpeggio":
                    degree = root + 2 * ((k + tone) % 3)
                else:
                    degree = root + 2 * (tone % 3) + (6 if tone == 3 else 0)
                midi = _fit_range(degree_to_midi(degree, register), family)
                notes.append(
                    _note(
                        rng,
                        voice,
                        family,
                        t,
                        step,
                        midi,
                        legato or pattern == "sustain",
                        phrase_db - 4.0,
                        crescendo_db,
                        seconds,
                    )
                )
                t += step
                k += 1
    hits: list[Hit] = []
    if rng.random() < config.percussion_probability:
        hits = _plan_percussion(rng, start, seconds, beat, beats_per_bar)
    return Score(tuning, tempo, scale_name, tonic, tuple(notes), tuple(hits))


def _note(rng, voice, family, onset, length, midi, legato, phrase_db, crescendo_db, seconds) -> Note:
    sounding = length * (rng.uniform(0.9, 1.02) if legato else rng.uniform(0.3, 0.6))
    level_db = phrase_db + crescendo_db * np.clip(onset / max(seconds, 1e-3), 0, 1) + rng.uniform(-3.0, 3.0)
    return Note(
        voice,
        family,
        float(onset),
        float(onset + max(sounding, 0.05)),
        float(midi),
        float(10 ** (level_db / 20)),
    )


def _plan_percussion(rng, start, seconds, beat, beats_per_bar) -> list[Hit]:
    brushes = rng.random() < 0.4  # jazz and dance bands of the era: brushes on a snare
    hits, t, k = [], start, 0
    while t < seconds:
        pos = k % beats_per_bar
        if pos == 0 or (beats_per_bar == 4 and pos == 2 and rng.random() < 0.6):
            hits.append(Hit("kick", t, rng.uniform(0.5, 1.0)))
        if beats_per_bar in (2, 4) and pos % 2 == 1:
            hits.append(Hit("brush" if brushes else "snare", t, rng.uniform(0.4, 0.9)))
        if brushes:
            hits.append(Hit("brush", t + beat / 2, rng.uniform(0.1, 0.4)))
        elif rng.random() < 0.8:
            cymbal = "ride" if rng.random() < 0.3 else "hihat"
            hits.append(Hit(cymbal, t, rng.uniform(0.2, 0.6)))
            if rng.random() < 0.5:
                hits.append(
                    Hit(cymbal, t + beat * (2 / 3 if rng.random() < 0.5 else 1 / 2), rng.uniform(0.1, 0.4))
                )
        t += beat
        k += 1
    return hits


# ----------------------------------------------------------------------------- spectral additive synthesis
def synthesis_fft(sample_rate: int) -> tuple[int, int]:
    """(n_fft, hop) of the synthesis STFT: about 11 ms windows at any rate (sharp enough for attacks)."""
    n_fft = 256 if sample_rate <= 24000 else 512
    return n_fft, n_fft // 4


_LOBE_RESOLUTION = 256  # table steps per bin
_LOBE_HALF_WIDTH = 4


@functools.lru_cache(maxsize=8)
def _lobe_table(n_fft: int) -> np.ndarray:
    """Real kernel R(delta) of a Hann window's spectrum at fractional bin offsets.

    For x = a cos(psi + 2 pi f t / sr), the centred STFT frame m is
    X_m[b] = a/2 (-1)^b e^{i psi_m} R(b - c) + (the negative-frequency image), c = f n_fft / sr.
    """
    delta = (
        np.arange(-_LOBE_HALF_WIDTH * _LOBE_RESOLUTION, _LOBE_HALF_WIDTH * _LOBE_RESOLUTION + 1)
        / _LOBE_RESOLUTION
    )
    n = np.arange(n_fft)
    window = np.hanning(n_fft + 1)[:-1]
    kernel = (window[None, :] * np.exp(-2j * np.pi * np.outer(delta, n) / n_fft)).sum(axis=1)
    return np.real(np.exp(1j * np.pi * delta) * kernel)  # tabulated at delta = -4 .. 4 in 1/256 bin steps


class SpectrumCanvas:
    """Accumulates sinusoids (per-frame frequency and amplitude) into one STFT, inverted once."""

    def __init__(self, num_samples: int, sample_rate: int):
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.n_fft, self.hop = synthesis_fft(sample_rate)
        self.n_frames = num_samples // self.hop + 1
        self.bins = self.n_fft // 2 + 1
        self._parts: list[tuple[np.ndarray, ...]] = []
        self.breath = np.zeros(self.n_frames)  # level of breath/bow noise per frame (sustained families)

    def frame_times(self) -> np.ndarray:
        return np.arange(self.n_frames) * self.hop / self.sample_rate

    def add(self, frames: np.ndarray, freqs: np.ndarray, amps: np.ndarray, phase0: np.ndarray) -> None:
        """Partials (P, F) over the consecutive frame indices ``frames`` (F,); phase0 (P,) at the first."""
        if frames.size == 0 or freqs.size == 0:
            return
        step = 2 * np.pi * freqs * self.hop / self.sample_rate
        psi = phase0[:, None] + np.cumsum(step, axis=1) - step[:, :1]
        # Partials 80 dB below the loudest of this note add nothing audible but cost as much as the rest.
        keep = (freqs < 0.48 * self.sample_rate) & (freqs > 0) & (amps > 1e-4 * max(float(amps.max()), 1e-12))
        self._parts.append((np.broadcast_to(frames, freqs.shape)[keep], freqs[keep], amps[keep], psi[keep]))

    def render(self) -> np.ndarray:
        if not self._parts:
            return np.zeros(self.num_samples)
        frames, freqs, amps, psi = (np.concatenate(p) for p in zip(*self._parts, strict=True))
        resolution, half_width, table = _LOBE_RESOLUTION, _LOBE_HALF_WIDTH, _lobe_table(self.n_fft)
        centre = freqs * self.n_fft / self.sample_rate
        offsets = np.arange(-1, 3)  # floor(c) - 1 .. floor(c) + 2 covers the Hann main lobe (|delta| < 2)
        spec = np.zeros(self.n_frames * self.bins, dtype=np.complex128)
        rot = 0.5 * amps * np.exp(1j * psi)
        low = centre < 3.0  # only partials near DC have a negative-frequency image inside the lobe
        for sign, members in ((1.0, slice(None)), (-1.0, low)):
            c, r, f = sign * centre[members], rot[members], frames[members]
            if sign < 0:
                r = np.conj(r)
            b = np.floor(c)[:, None] + offsets
            lookup = np.rint((b - c[:, None] + half_width) * resolution).astype(np.int64)
            weights = r[:, None] * (table[lookup] * np.where(b % 2 == 0, 1.0, -1.0))
            valid = (b >= 0) & (b < self.bins)
            index = (f[:, None] * self.bins + b.astype(np.int64))[valid]
            spec += np.bincount(index, weights[valid].real, minlength=spec.size)
            spec += 1j * np.bincount(index, weights[valid].imag, minlength=spec.size)
        return istft(spec.reshape(self.n_frames, self.bins), self.n_fft, self.hop, self.num_samples)


# ----------------------------------------------------------------------------- instrument models
def _resonances(
    freqs: np.ndarray, centres: np.ndarray, widths: np.ndarray, gains_db: np.ndarray, floor_db: float
) -> np.ndarray:
    """Sum of resonance peaks (formants, body modes) on a floor, evaluated at partial frequencies."""
    out = np.full(freqs.shape, 10 ** (floor_db / 20))
    for c, w, g in zip(centres, widths, gains_db, strict=True):
        out = out + 10 ** (g / 20) / np.sqrt(1.0 + ((freqs - c) / (0.5 * w)) ** 2)
    return out


def _envelope(
    t: np.ndarray, duration: float, attack: float, release: float, decay: float | None = None
) -> np.ndarray:
    """Attack ramp, optional exponential decay while held, exponential release after note-off."""
    env = np.clip(t / max(attack, 1e-3), 0.0, 1.0) ** 1.5
    if decay is not None:
        env = env * np.exp(-np.maximum(t - attack, 0.0) / decay)
    held = np.exp(-np.maximum(t - duration, 0.0) / max(release, 1e-3))
    return env * held


class Instrument:
    """Per-clip instance of a family: timbre drawn once, so every note of a voice sounds like one player."""

    def __init__(self, family: str, rng: np.random.Generator, config: MusicConfig, sample_rate: int):
        self.family = family
        self.rng = rng
        self.sr = sample_rate
        self.vibrato_cents = rng.uniform(*config.vibrato_cents)
        self.vibrato_hz = rng.uniform(4.5, 7.0)
        self.brightness = rng.uniform(-0.4, 0.4)  # spectral slope offset
        if family in ("bowed", "reed", "brass"):
            count = int(rng.integers(3, 7))
            self.body = (
                np.exp(rng.uniform(np.log(200), np.log(5000), count)),
                rng.uniform(80, 800, count),
                rng.uniform(-12, 6, count),
            )
        if family == "voice":
            self.operatic = rng.random() < 0.5
            self.vowel_scale = rng.uniform(0.9, 1.15)
        if family == "organ":
            self.stops = rng.uniform(0, 1, 8) * (rng.random(8) < 0.6)
            self.stops[0] = max(self.stops[0], 0.5)
        if family == "reed":
            self.clarinet = rng.random() < 0.4
        if family == "piano":
            self.inharmonicity = np.exp(rng.uniform(np.log(8e-5), np.log(6e-4)))
            self.hammer_position = rng.uniform(1 / 9, 1 / 7)
            self.sustain = rng.uniform(0.6, 1.6)

    # The number of partials is capped so the cost stays bounded; the top of the spectrum is
    # carried by the noise parts and by families with dense spectra.
    def _partials(self, f0: float, cap: int = 48) -> np.ndarray:
        return np.arange(1, max(1, min(cap, int(0.47 * self.sr / f0))) + 1, dtype=np.float64)

    def vibrato(self, t: np.ndarray, depth_scale: float = 1.0) -> np.ndarray:
        onset = np.clip(t / 0.3, 0, 1)  # vibrato grows in after the attack, as players do
        cents = (
            depth_scale
            * self.vibrato_cents
            * onset
            * np.sin(2 * np.pi * self.vibrato_hz * t + self.rng.uniform(0, 6.3))
        )
        return 2.0 ** (cents / 1200.0)

    def play(self, canvas: SpectrumCanvas, note: Note, f0: float, noise_out: np.ndarray) -> None:
        times = canvas.frame_times()
        ring = {"piano": 0.6, "plucked": 0.4}.get(self.family, 0.5)  # sound after note-off (damper, release)
        first = max(0, int(np.ceil(note.onset * self.sr / canvas.hop)))
        last = min(canvas.n_frames, int((note.offset + ring) * self.sr / canvas.hop) + 1)
        if last <= first:
            return
        frames = np.arange(first, last)
        t = times[frames] - note.onset
        duration = note.offset - note.onset
        k = self._partials(f0)
        getattr(self, f"_{self.family}")(
            canvas, frames, t, duration, f0, k, note.velocity, noise_out, note.onset
        )

    def _add(self, canvas, frames, freqs, amps):
        canvas.add(frames, freqs, amps, self.rng.uniform(0, 2 * np.pi, freqs.shape[0]))

    def _noise_burst(self, noise_out, onset, seconds, centre, width_oct, level, decay):
        """A band of noise with a sharp attack, in the time domain (hammer, pluck, breath, chiff)."""
        start = int(round(onset * self.sr))
        n = int(seconds * self.sr)
        lo, hi = max(start, 0), min(start + n, len(noise_out))
        if hi <= lo or n < 8:
            return
        band = lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / centre) / width_oct) ** 2)
        burst = shape_spectrum(self.rng, n, band, self.sr) * np.exp(-np.arange(n) / (decay * self.sr))
        noise_out[lo:hi] += level * burst[lo - start : hi - start]

    def _piano(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        b = (
            self.inharmonicity * (f0 / 261.6) ** -0.5
        )  # bass strings are wound: their partials stretch less per step
        freqs = f0 * k * np.sqrt(1 + b * k**2)
        tone = np.abs(np.sin(np.pi * k * self.hammer_position)) / k ** (
            1.3 - 0.5 * velocity - self.brightness
        )
        tau = self.sustain * 3.0 * (f0 / 261.6) ** -0.6 / (1.0 + 0.12 * (k - 1) ** 1.3)
        tt = t[None, :]
        decay = 0.65 * np.exp(-tt / (0.25 * tau[:, None])) + 0.35 * np.exp(
            -tt / tau[:, None]
        )  # prompt + aftersound
        damper = np.exp(-np.maximum(tt - duration, 0.0) / 0.09)
        attack = np.clip(tt / 0.002, 0, 1)
        self._add(
            canvas,
            frames,
            np.repeat(freqs[:, None], len(t), 1),
            velocity * tone[:, None] * decay * damper * attack,
        )
        self._noise_burst(noise_out, onset, 0.03, 2500.0 + 4 * f0, 1.5, 0.04 * velocity, 0.006)

    def _plucked(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        position = self.rng.uniform(0.08, 0.3)
        freqs = f0 * k * np.sqrt(1 + 2e-5 * k**2)
        tone = np.abs(np.sin(np.pi * k * position)) / k ** (1.5 - self.brightness)
        tau = self.rng.uniform(0.4, 1.5) * (f0 / 200.0) ** -0.4 / (1.0 + 0.3 * (k - 1))
        tt = t[None, :]
        env = (
            np.exp(-tt / tau[:, None])
            * np.exp(-np.maximum(tt - duration, 0.0) / 0.05)
            * np.clip(tt / 0.001, 0, 1)
        )
        self._add(canvas, frames, np.repeat(freqs[:, None], len(t), 1), velocity * tone[:, None] * env)
        self._noise_burst(noise_out, onset, 0.015, 3000.0, 1.2, 0.03 * velocity, 0.003)

    def _sustained(self, canvas, frames, freqs, tone, env, velocity, breath=0.0):
        self._add(canvas, frames, freqs, velocity * tone * env[None, :])
        # Breath and bow noise follow the note's envelope; one shared noise band serves every voice.
        canvas.breath[frames] += breath * velocity * env * float(np.sqrt(np.mean(tone**2)))

    def _bowed(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        f = f0 * self.vibrato(t)[None, :] * k[:, None]
        tone = _resonances(f, *self.body, floor_db=-6.0) / k[:, None] ** (1.0 - 0.3 * self.brightness)
        env = _envelope(t, duration, attack=self.rng.uniform(0.05, 0.25), release=0.15)
        self._sustained(canvas, frames, f, tone, env, velocity, breath=0.5)

    def _reed(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        f = f0 * self.vibrato(t, 0.4)[None, :] * k[:, None]
        odd = np.where(k % 2 == 1, 1.0, 0.25 if f0 < 400 else 0.7) if self.clarinet else np.ones_like(k)
        tone = (odd / k ** (1.1 - self.brightness))[:, None] * _resonances(f, *self.body, floor_db=-4.0)
        env = _envelope(t, duration, attack=self.rng.uniform(0.02, 0.08), release=0.08)
        self._sustained(canvas, frames, f, tone, env, velocity, breath=0.8)

    def _brass(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        scoop = 2.0 ** (-0.4 * np.exp(-t / 0.03) / 12.0)  # lips settle on the pitch from below
        f = f0 * (self.vibrato(t, 0.3) * scoop)[None, :] * k[:, None]
        slope = 2.6 - 1.6 * velocity - self.brightness  # loud brass is bright
        tone = (1.0 / k ** max(slope, 0.6))[:, None] * _resonances(f, *self.body, floor_db=-3.0)
        env = _envelope(t, duration, attack=self.rng.uniform(0.02, 0.06), release=0.1)
        self._sustained(canvas, frames, f, tone, env, velocity)
        self._noise_burst(noise_out, onset, 0.05, 1500.0, 1.5, 0.02 * velocity, 0.02)

    def _organ(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        footage = np.array([1, 2, 3, 4, 5, 6, 8, 10], dtype=np.float64)  # drawbar harmonics
        freqs = f0 * footage[:, None] * np.ones((1, len(t)))
        env = _envelope(t, duration, attack=0.03, release=0.08)
        self._sustained(canvas, frames, freqs, self.stops[:, None], env, velocity)
        self._noise_burst(noise_out, onset, 0.04, 4000.0, 1.0, 0.01 * velocity, 0.015)  # pipe chiff

    def _voice(self, canvas, frames, t, duration, f0, k, velocity, noise_out, onset):
        f = f0 * self.vibrato(t, 1.6 if self.operatic else 0.6)[None, :] * k[:, None]
        vowel = _SUNG_VOWELS[int(self.rng.integers(len(_SUNG_VOWELS)))] * self.vowel_scale
        centres = np.append(vowel, [3300.0, 4200.0])
        widths = np.array([80.0, 100.0, 150.0, 250.0, 300.0]) * self.rng.uniform(0.8, 1.5)
        gains = np.array([0.0, -4.0, -10.0, -14.0, -18.0])
        if self.operatic:  # the singer's formant: a cluster near 3 kHz that carries over an orchestra
            centres = np.append(centres, self.rng.uniform(2600, 3200))
            widths, gains = np.append(widths, 400.0), np.append(gains, -2.0)
        source = 1.0 / k ** (1.0 + 0.4 * (1 - velocity) - self.brightness)
        tone = source[:, None] * _resonances(f, centres, widths, gains, floor_db=-30.0)
        env = _envelope(t, duration, attack=self.rng.uniform(0.04, 0.12), release=0.12)
        self._sustained(canvas, frames, f, tone, env, velocity, breath=0.4)


def _percussion(rng: np.random.Generator, hits, num_samples: int, sample_rate: int) -> np.ndarray:
    """Kick, snare, brushes, hi-hat and ride: noise bands and pitched bodies with sharp attacks."""
    out = np.zeros(num_samples)
    nyq = sample_rate / 2
    for hit in hits:
        start = int(round(hit.onset * sample_rate))
        spec = {
            "kick": (0.35, 120.0, 1.0, 0.06),
            "snare": (0.3, 3500.0, 1.6, 0.09),
            "brush": (0.25, 5000.0, 1.2, 0.08),
            "hihat": (0.15, min(10000.0, 0.4 * nyq), 1.0, 0.03),
            "ride": (0.9, min(7000.0, 0.35 * nyq), 1.2, 0.35),
        }
        seconds, centre, width, decay = spec[hit.kind]
        n = int(seconds * sample_rate)
        lo, hi = max(start, 0), min(start + n, num_samples)
        if hi <= lo:
            continue
        tt = np.arange(n) / sample_rate
        band = lambda f, c=centre, w=width: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / c) / w) ** 2)
        body = shape_spectrum(rng, n, band, sample_rate)
        if hit.kind == "brush":  # a swish: slow rise and fall instead of a strike
            env = np.sin(np.pi * np.clip(tt / seconds, 0, 1)) ** 2
        else:
            env = np.exp(-tt / decay) * np.clip(tt / 0.0005, 0, 1)
        sound = body * env
        if hit.kind in ("kick", "snare"):
            sweep = (55.0 if hit.kind == "kick" else 190.0) * (1 + 1.5 * np.exp(-tt / 0.02))
            sound = (
                sound * (0.3 if hit.kind == "kick" else 1.0)
                + 2.0 * np.sin(2 * np.pi * np.cumsum(sweep) / sample_rate) * env
            )
        out[lo:hi] += hit.velocity * 0.25 * sound[lo - start : hi - start]
    return out


def render_music(
    rng: np.random.Generator,
    score: Score,
    num_samples: int,
    sample_rate: int,
    config: MusicConfig = MusicConfig(),
) -> np.ndarray:
    """The score played at ``sample_rate``: float64, not normalised."""
    canvas = SpectrumCanvas(num_samples, sample_rate)
    noise = np.zeros(num_samples)
    players: dict[int, Instrument] = {}
    for note in score.notes:
        if note.voice not in players:
            players[note.voice] = Instrument(note.family, rng, config, sample_rate)
        players[note.voice].play(canvas, note, score.frequency(note.midi), noise)
    out = canvas.render() + noise
    if canvas.breath.any():
        centre = np.exp(rng.uniform(np.log(1200.0), np.log(4000.0)))
        band = lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1.0) / centre) / 1.5) ** 2)
        level = np.interp(np.arange(num_samples), np.arange(canvas.n_frames) * canvas.hop, canvas.breath)
        out += 0.05 * level * shape_spectrum(rng, num_samples, band, sample_rate)
    if score.hits:
        out += _percussion(rng, score.hits, num_samples, sample_rate)
    return out


def synthesize_music(
    rng: np.random.Generator, num_samples: int, sample_rate: int, config: MusicConfig = MusicConfig()
) -> np.ndarray:
    """One clip of procedural music, float32, peak-normalised to a random level."""
    for _ in range(4):
        score = plan_music(rng, num_samples / sample_rate, config)
        out = render_music(rng, score, num_samples, sample_rate, config)
        peak = float(np.max(np.abs(out)))
        if peak > 1e-6 and np.sqrt(np.mean(out**2)) > 1e-4 * peak:
            return (out / peak * rng.uniform(0.3, 0.9)).astype(np.float32)
    return np.zeros(num_samples, dtype=np.float32)
