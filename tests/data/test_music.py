"""The procedural music source: pitch, physics, structure, recording chain, mixture and stratified sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import welch

from lightning_app.data.datasets import VAL_STREAM, MixtureDataset, ShardSampler
from lightning_app.data.music import (
    FAMILIES,
    SCALES,
    MusicConfig,
    Note,
    Score,
    plan_music,
    render_music,
    synthesize_music,
)
from lightning_app.data.recording import RecordingConfig, apply_recording, apply_tone, shelf_response
from lightning_app.data.sources import CleanMixture, ProceduralNoise

STEADY = MusicConfig(vibrato_cents=(4.0, 4.0))


def _one_note(
    family: str, midi: float, sample_rate: int, seconds: float = 1.6, seed: int = 0, tuning: float = 440.0
) -> np.ndarray:
    score = Score(tuning, 100.0, "major", 0, (Note(0, family, 0.0, seconds - 0.3, midi, 0.8),), ())
    return render_music(np.random.default_rng(seed), score, int(seconds * sample_rate), sample_rate, STEADY)


def _magnitude(x: np.ndarray, sample_rate: int, pad: int = 8):
    segment = x * np.hanning(len(x))
    spectrum = np.abs(np.fft.rfft(segment, pad * len(segment)))
    return np.fft.rfftfreq(pad * len(segment), 1.0 / sample_rate), spectrum


def estimate_f0(x: np.ndarray, sample_rate: int, low: float, high: float) -> float:
    """Harmonic-sum pitch estimate over [low, high] (first three harmonics), refined on the strongest
    harmonic peak near the winner; independent of the score except for the search range."""
    freqs, spectrum = _magnitude(x, sample_rate)
    candidates = low * 2.0 ** (np.arange(0, 1200 * np.log2(high / low), 0.5) / 1200)
    score = sum(np.interp(h * candidates, freqs, spectrum) / h for h in (1, 2, 3))
    best = candidates[int(np.argmax(score))]
    near = (freqs > best * 0.98) & (freqs < best * 1.02)
    i = np.flatnonzero(near)[np.argmax(spectrum[near])]
    a, b, c = np.log(spectrum[i - 1 : i + 2] + 1e-12)  # parabolic interpolation of the log peak
    return float(freqs[i] + 0.5 * (a - c) / (a - 2 * b + c) * (freqs[1] - freqs[0]))


@pytest.mark.parametrize("sample_rate", [16000, 44100])
@pytest.mark.parametrize("family", FAMILIES)
def test_rendered_pitch_matches_the_score(family, sample_rate):
    tuning = 436.0  # a detuned transfer: the score's tuning, not 440 Hz, sets every note
    for midi in (50.0, 62.0):
        expected = tuning * 2 ** ((midi - 69) / 12)
        x = _one_note(family, midi, sample_rate, tuning=tuning)
        steady = x[int(0.35 * sample_rate) : int(1.25 * sample_rate)]
        f0 = estimate_f0(steady, sample_rate, expected * 2 ** (-5 / 12), expected * 2 ** (5 / 12))
        cents = 1200 * np.log2(f0 / expected)
        assert abs(cents) < 5.0, (
            f"{family} at {sample_rate} Hz, MIDI {midi}: {f0:.2f} Hz is {cents:+.1f} cents off"
        )


def test_struck_strings_are_inharmonic_and_decay_while_organ_sustains():
    sr = 44100
    piano = _one_note("piano", 45.0, sr, seconds=2.5)  # 110 Hz: partials well resolved
    freqs, spectrum = _magnitude(piano[int(0.05 * sr) : int(0.6 * sr)], sr)

    def partial(k):  # the strongest peak within 3 % of k x the fundamental
        sel = (freqs > 110 * k * 0.99) & (freqs < 110 * k * 1.04)
        return freqs[sel][np.argmax(spectrum[sel])]

    stretch = partial(12) / (12 * partial(1))
    assert stretch > 1.002, f"piano partial 12 at {stretch:.4f} x 12 f1: no string stiffness"

    def level(x, t0, t1):
        return float(np.sqrt(np.mean(x[int(t0 * sr) : int(t1 * sr)] ** 2)))

    assert level(piano, 1.6, 2.0) < 0.7 * level(piano, 0.05, 0.45), "a struck string must decay while held"
    organ = _one_note("organ", 45.0, sr, seconds=2.5)
    assert level(organ, 1.6, 2.0) == pytest.approx(level(organ, 0.2, 0.6), rel=0.1), "an organ pipe sustains"
    bowed = _one_note("bowed", 57.0, sr, seconds=2.5)
    assert level(bowed, 0.0, 0.02) < 0.3 * level(bowed, 0.5, 1.0), "bowed notes start slowly"


def test_score_structure_families_voices_percussion_and_rests():
    scores = [plan_music(np.random.default_rng(seed), 3.0) for seed in range(150)]
    assert {f for s in scores for f in s.families} == set(FAMILIES)
    voices = [s.voices for s in scores]
    assert min(voices) == 1 and max(voices) == 6
    with_drums = np.mean([bool(s.hits) for s in scores])
    assert 0.15 < with_drums < 0.45, f"percussion in {with_drums:.0%} of clips, configured 30 %"
    rich = next(s for s in scores if s.voices == 6)
    sounding = [sum(n.onset <= t < n.offset for n in rich.notes) for t in np.linspace(0, 3, 61)]
    assert max(sounding) >= 4, "six voices should sound together at some point"
    for s in scores[:40]:  # every note belongs to the score's key
        steps = {(round(n.midi) - s.tonic) % 12 for n in s.notes}
        assert steps <= set(SCALES[s.scale]), f"notes outside {s.scale}: {sorted(steps)}"
    config = MusicConfig(percussion_probability=0.0, voices=(2, 2), family_weights={"plucked": 1.0})
    limited = plan_music(np.random.default_rng(0), 3.0, config)
    assert limited.voices == 2 and limited.families == {"plucked"} and not limited.hits


def test_music_is_a_pure_function_of_its_seed_at_any_rate():
    for rate in (16000, 44100, 48000):
        a = synthesize_music(np.random.default_rng(7), rate, rate)
        b = synthesize_music(np.random.default_rng(7), rate, rate)
        c = synthesize_music(np.random.default_rng(8), rate, rate)
        assert a.dtype == np.float32 and len(a) == rate and np.all(np.isfinite(a))
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        assert 0.2 < np.max(np.abs(a)) <= 0.9


def _band_power(x, sr, lo, hi):
    f, p = welch(x, sr, nperseg=4096)
    return float(p[(f >= lo) & (f < hi)].sum())


def test_era_band_limit_is_applied_to_the_clean_reference():
    sr = 44100
    rng = np.random.default_rng(0)
    white = rng.standard_normal(2 * sr)
    # One octave above the highest upper edge an era may draw, its 18-30 dB/octave slopes are >= 18 dB down.
    for era, inside, outside in (
        ("acoustic", (400, 2000), (8000, 20000)),
        ("electrical", (200, 4000), (18000, 21000)),
    ):
        config = RecordingConfig(room_probability=0.0, era_weights={era: 1.0})
        for seed in range(3):
            out, name = apply_recording(np.random.default_rng(seed), white, sr, config)
            assert name == era
            ratio_db = 10 * np.log10(
                _band_power(out, sr, *outside)
                / (outside[1] - outside[0])
                / (_band_power(out, sr, *inside) / (inside[1] - inside[0]))
            )
            assert ratio_db < -18, f"{era}: {outside} Hz only {ratio_db:.1f} dB below the band"
    full, _ = apply_recording(
        np.random.default_rng(0), white, sr, RecordingConfig(room_probability=0.0, era_weights={"full": 1.0})
    )
    assert _band_power(full, sr, 10000, 14000) > 0.5 * _band_power(white, sr, 10000, 14000)


def test_tone_shelf_lifts_or_cuts_the_top_band_by_its_drawn_gain_and_leaves_the_bass():
    sr = 44100
    freqs = np.array([50.0, 3000.0, 21000.0])
    response_db = 20 * np.log10(shelf_response(freqs, 9.0, 3000.0))
    np.testing.assert_allclose(response_db, [0.0, 4.5, 8.8], atol=0.1)  # half the gain at the corner
    white = np.random.default_rng(0).standard_normal(2 * sr)
    config = RecordingConfig(tone_probability=1.0, tone_db=(-6.0, 9.0), tone_hz=(1500.0, 8000.0))
    top = []
    for seed in range(12):
        out = apply_tone(np.random.default_rng(seed), white, sr, config)
        bass_db = 10 * np.log10(_band_power(out, sr, 50, 300) / _band_power(white, sr, 50, 300))
        top_db = 10 * np.log10(_band_power(out, sr, 18000, 21000) / _band_power(white, sr, 18000, 21000))
        assert abs(bass_db) < 0.3, f"seed {seed}: the bass moved {bass_db:+.2f} dB"
        assert -6.0 <= top_db <= 9.0, f"seed {seed}: the top band moved {top_db:+.2f} dB, outside the range"
        top.append(top_db)
    assert min(top) < -1.0 and max(top) > 3.0, f"the shelves drawn do not go both ways: {top}"
    # Off by default, and at probability 0 the audio is returned untouched.
    assert apply_tone(np.random.default_rng(0), white, sr, RecordingConfig()) is white


def test_room_adds_a_decaying_tail():
    sr = 16000
    click = np.zeros(sr)
    click[100] = 1.0
    config = RecordingConfig(
        room_probability=1.0, rt60_s=(0.8, 0.8), wet_db=(-6.0, -6.0), era_weights={"full": 1.0}
    )
    out, _ = apply_recording(np.random.default_rng(1), click, sr, config)
    early = np.sqrt(np.mean(out[100 + int(0.05 * sr) : 100 + int(0.15 * sr)] ** 2))
    late = np.sqrt(np.mean(out[100 + int(0.45 * sr) : 100 + int(0.55 * sr)] ** 2))
    # 0.4 s later at RT60 0.8 s: about 30 dB down (the high band decays faster still).
    assert 20 < 20 * np.log10(early / late) < 45


class _Constant:
    def __init__(self, value, sample_rate=8000):
        self.value, self.sample_rate = value, sample_rate

    def __call__(self, rng, num_samples):
        return np.full(num_samples, self.value, dtype=np.float32), "ignored"


def test_mixture_weights_are_respected_and_labels_carried():
    mixture = CleanMixture({"speech": _Constant(0.1), "music": _Constant(0.2)}, {"speech": 0.3, "music": 0.7})
    draws = [mixture(np.random.default_rng(i), 16) for i in range(2000)]
    share = np.mean([label == "music" for _, label in draws])
    assert abs(share - 0.7) < 0.035, f"music drawn {share:.3f} of the time, weight 0.7"
    assert all(np.all(audio == (0.2 if label == "music" else 0.1)) for audio, label in draws)
    only = CleanMixture({"speech": _Constant(0.1), "music": _Constant(0.2)}, {"speech": 0.0, "music": 1.0})
    assert {only(np.random.default_rng(i), 4)[1] for i in range(50)} == {"music"}
    with pytest.raises(ValueError, match="every weight is 0"):
        CleanMixture({"speech": _Constant(0.1)}, {"speech": 0.0})


def test_stratified_validation_set_is_fixed_across_instances_and_ranks():
    sr = 8000

    def dataset():
        mixture = CleanMixture(
            {"speech": _Constant(0.1, sr), "music": _Constant(0.2, sr)}, {"speech": 0.35, "music": 0.65}
        )
        noise = ProceduralNoise(sr, {"white": {"weight": 1.0}})
        return MixtureDataset(
            mixture,
            noise,
            num_samples=400,
            snr_db=(0, 20),
            gain_db=(-6, 0),
            mode="supervised",
            seed=3,
            length=20,
            stream=VAL_STREAM,
        )

    a, b = dataset(), dataset()
    contents = [a[i]["content"] for i in range(20)]
    assert contents == [b[i]["content"] for i in range(20)]
    assert contents.count("music") == 13 and contents.count("speech") == 7  # 0.65 x 20 and 0.35 x 20
    assert set(contents[:4]) == {"music", "speech"}, "any prefix of the set is mixed"
    for i in (0, 5, 19):
        torch.testing.assert_close(a[i]["noisy"], b[i]["noisy"])
    shards = [list(ShardSampler(20, rank, 3)) for rank in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(20))
    assert [a[i]["content"] for s in shards for i in s] == [contents[i] for s in shards for i in s]
