"""The procedural degradations at 16, 44.1 and 48 kHz: levels, determinism and where their energy sits in Hz.

Spectra are Welch estimates with 0.2 s segments hopping 0.1 s, the same segments in seconds at every rate
(a hop that rounds differently per rate weighs a click differently). Bounds are the physics of each
degradation, derived in the comments, never fitted to the measured values.
"""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.signal import welch

from lightning_app.data.noise import GENERATORS, NoiseMixture

RATES = (16000, 44100, 48000)
FULL_BAND = (44100, 48000)
SEEDS = range(6)
OCTAVES = ((62.5, 125), (125, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 7000))
DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "defaults.yaml"


def _psd(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    return welch(x, sample_rate, nperseg=sample_rate // 5)


def _band(f: np.ndarray, p: np.ndarray, lo: float, hi: float) -> float:
    return float(p[(f >= lo) & (f < hi)].sum())


@cache
def _spectrum(name: str, sample_rate: int, seed: int, seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    x = GENERATORS[name](np.random.default_rng(seed), int(seconds * sample_rate), sample_rate)
    return _psd(x, sample_rate)


def _octave_shape(name: str, sample_rate: int) -> np.ndarray:
    """Fraction of the power below 7 kHz in each octave, per seed (its level and its top bands aside),
    averaged."""
    shapes = []
    for seed in SEEDS:
        f, p = _spectrum(name, sample_rate, seed)
        shapes.append([_band(f, p, lo, hi) / _band(f, p, 0.0, 7000.0) for lo, hi in OCTAVES])
    return np.mean(shapes, axis=0)


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_is_finite_unit_rms_and_a_pure_function_of_the_seed(name, sample_rate):
    fn = GENERATORS[name]
    n = int(0.77 * sample_rate) + 1  # odd, not a whole number of periods of anything
    x = fn(np.random.default_rng(11), n, sample_rate)
    assert x.shape == (n,) and x.dtype == np.float64
    assert np.all(np.isfinite(x))
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_array_equal(x, fn(np.random.default_rng(11), n, sample_rate))
    assert not np.allclose(x, fn(np.random.default_rng(12), n, sample_rate))


@pytest.mark.slow
@pytest.mark.parametrize("sample_rate", FULL_BAND)
@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_spectrum_below_7_khz_is_the_same_in_hz_at_16_khz_and_full_band(name, sample_rate):
    # Every spectrum is defined in Hz, so a wider band only adds octaves above 8 kHz: below 7 kHz the
    # shape must match (1 dB: Welch scatter of a few seeds is ~0.2 dB). Bands with under 1e-6 of the
    # power are numerical noise (rumble above 4 kHz) and are skipped.
    low, full = _octave_shape(name, 16000), _octave_shape(name, sample_rate)
    kept = low > 1e-6
    diff_db = 10 * np.log10(full[kept] / low[kept])
    assert np.all(np.abs(diff_db) < 1.0), (
        f"{name}: octave shape {sample_rate} vs 16000 Hz differs by {diff_db.round(2)} dB"
    )


@pytest.mark.parametrize("name", ["brown", "rumble", "thumps", "hum"])
def test_band_limited_generators_keep_the_same_share_below_4_khz_at_every_rate(name):
    # Their energy lies far below 8 kHz, so a wider band must not move it: the share below 4 kHz at
    # 48 kHz matches 16 kHz within 1 % (a white floor whose density falls with the rate fails this).
    shares = {}
    for sample_rate in (16000, 48000):
        spectra = [_spectrum(name, sample_rate, seed) for seed in SEEDS]
        shares[sample_rate] = np.mean(
            [_band(f, p, 0.0, 4000.0) / _band(f, p, 0.0, np.inf) for f, p in spectra]
        )
    assert shares[48000] == pytest.approx(shares[16000], abs=0.01)
    assert shares[48000] > 0.95


@pytest.mark.parametrize("sample_rate", RATES)
@pytest.mark.parametrize(("name", "top_hz"), [("rumble", 150.0), ("thumps", 400.0), ("hum", 1000.0)])
def test_low_frequency_degradations_stay_low_at_every_rate(name, sample_rate, top_hz):
    # Rumble: bearing noise low-passed at 15-80 Hz (24 dB/oct in amplitude); thumps: 25-120 Hz ringing of a
    # warp; hum: at most 12 harmonics of 60 Hz = 720 Hz. At least 95 % of the power below these.
    for seed in SEEDS:
        f, p = _spectrum(name, sample_rate, seed)
        assert _band(f, p, 0.0, top_hz) / _band(f, p, 0.0, np.inf) > 0.95, (name, seed)


@pytest.mark.parametrize("sample_rate", RATES)
def test_hum_peaks_at_mains_harmonics_at_every_rate(sample_rate):
    for seed in SEEDS:
        f, p = _spectrum("hum", sample_rate, seed)
        lo = (f > 20.0) & (f < 2000.0)
        fl, pl = f[lo], p[lo]
        peaks = [i for i in range(1, len(pl) - 1) if pl[i] >= pl[i - 1] and pl[i] >= pl[i + 1]]
        strongest = fl[sorted(peaks, key=lambda i: -pl[i])[:3]]
        # Welch bins are 5 Hz wide and the drift is below 0.3 %: within one bin of a multiple of 50 or of 60
        # Hz.
        assert any(
            np.all(np.abs(strongest - mains * np.round(strongest / mains)) <= 5.0) for mains in (50.0, 60.0)
        ), (seed, strongest)
    # The same seed hums at the same harmonics in Hz at every rate.
    f16, p16 = _spectrum("hum", 16000, 0)
    f, p = _spectrum("hum", sample_rate, 0)
    assert f[np.argmax(p)] == f16[np.argmax(p16)]


def test_hum_drops_harmonics_above_nyquist_instead_of_aliasing():
    # 200 harmonics of 60 Hz reach 12 kHz: at 16 kHz those above 8 kHz must vanish, not fold back to
    # frequencies 20 Hz off the multiples of 60 Hz. Off the harmonics only the -40 dB white floor remains,
    # ~1e-6 of the strongest bin; a folded harmonic k >= 134 (amplitude k^-0.5 .. k^-2) stands far above it
    # unless the drawn slope is steep, hence several seeds.
    sample_rate = 16000
    for seed in SEEDS:
        x = GENERATORS["hum"](
            np.random.default_rng(seed),
            2 * sample_rate,
            sample_rate,
            mains_hz=(60.0, 60.0),
            harmonics=(200, 200),
            drift=(0.0, 0.0),
        )
        f, p = _psd(x, sample_rate)
        off_harmonic = np.abs(f - 60.0 * np.round(f / 60.0)) > 10.0
        assert p[off_harmonic].max() < 1e-5 * p.max(), seed


# Top octave (11-20 kHz) against 1-4 kHz, in dB of band power (a flat spectrum gives +4.8 dB: the top
# band is three times wider). Each bound is the darkest case the generator's physical ranges allow, less
# 1.5 dB for estimation; each seed draws one case, so every seed must clear it.
TOP_OCTAVE_BOUND_DB = {
    "white": 3.0,  # flat to Nyquist
    # A dust kick rings a pickup resonance of >= 1 kHz for <= 0.4 ms and starts on an edge that falls only
    # 6 dB/oct above it: the darkest such kernel (0.4 ms, ~1.7 kHz) has its top octave 16.1 dB down.
    "crackle": -17.6,
    # A scratch click: a 10-50 us edge plus ringing at 0.5-8 kHz for <= 3 ms (Q <= 8); the darkest (a 2.2 ms
    # ring at ~1.2 kHz on a 10 us edge at half level) has its top octave 21.8 dB down.
    "clicks": -23.3,
    # Groove hiss centred at >= 1.5 kHz whose treble skirt falls <= 9 dB/oct: darkest 17.8 dB down (a
    # Gaussian skirt, steeper every octave, reaches 37 dB down).
    "surface_hiss": -19.3,
    # Tape hiss shelves up 12 dB above a <= 4 kHz corner and holds to a >= 10 kHz band edge: +4.5 dB at worst.
    "tape_hiss": 3.0,
    # Flat-to-rising grain hiss through an optical aperture of >= 6 kHz (12 dB/oct above): 10.4 dB down at
    # worst.
    "film_hiss": -11.9,
}


@pytest.mark.parametrize("sample_rate", FULL_BAND)
@pytest.mark.parametrize("name", sorted(TOP_OCTAVE_BOUND_DB))
def test_broadband_degradations_reach_the_top_octave(name, sample_rate):
    for seed in SEEDS:
        f, p = _spectrum(name, sample_rate, seed, seconds=1.0)
        ratio_db = 10 * np.log10(_band(f, p, 11000.0, 20000.0) / _band(f, p, 1000.0, 4000.0))
        assert ratio_db > TOP_OCTAVE_BOUND_DB[name], (
            f"{name} seed {seed}: top octave {ratio_db:.1f} dB under 1-4 kHz"
        )


@pytest.mark.parametrize("sample_rate", FULL_BAND)
def test_surface_hiss_treble_falls_as_a_power_law_even_from_a_low_centre(sample_rate):
    # Groove-wall roughness is traced up the band (stylus tracing loss and playback de-emphasis: a few dB
    # per octave, RIAA's is 6), so the skirt above the centre falls at most 9 dB/oct: between 8-10 kHz and
    # 16-20 kHz (one octave) at most 10.5 dB even from the lowest centre, 1.5 kHz. A Gaussian skirt in
    # log-frequency gets steeper every octave (29 dB/oct three octaves above a 1-octave-wide bump).
    for seed in range(12):
        x = GENERATORS["surface_hiss"](
            np.random.default_rng(seed), sample_rate, sample_rate, centre_hz=(1500.0, 1500.0)
        )
        f, p = _psd(x, sample_rate)
        drop_db = 10 * np.log10(
            p[(f >= 16000.0) & (f < 20000.0)].mean() / p[(f >= 8000.0) & (f < 10000.0)].mean()
        )
        assert drop_db > -10.5, (seed, round(drop_db, 1))


@pytest.mark.parametrize("sample_rate", FULL_BAND)
@pytest.mark.parametrize("name", ["tape_hiss", "film_hiss"])
def test_analogue_hiss_rolls_off_at_the_top_of_the_reproducers_band(name, sample_rate):
    # No tape machine (band edge <= 20 kHz, 15 ips, gap loss above) or optical reproducer (slit loss above
    # <= 14 kHz) records flat or rising to 22 kHz. Density at 20-22 kHz against the densest 1 kHz band of
    # 4-16 kHz: the brightest case the ranges allow (tape: shelf corner 4 kHz still rising, edge 20 kHz)
    # is 1.05 dB down, so every seed is under -0.5 dB; half the tapes have an edge <= 14.1 kHz (7.5 ips),
    # 7.7 dB down at 21 kHz less <= 4.2 dB of rising shelf, so the median is under -3 dB.
    drops = []
    for seed in range(12):
        f, p = _spectrum(name, sample_rate, seed, seconds=1.0)
        top = p[(f >= 20000.0) & (f < 22000.0)].mean()
        peak = max(p[(f >= lo) & (f < lo + 1000.0)].mean() for lo in range(4000, 16000, 1000))
        drops.append(10 * np.log10(top / peak))
    assert max(drops) < -0.5, (name, np.round(drops, 1))
    assert np.median(drops) < -3.0, (name, np.round(drops, 1))


def _envelope(x: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """Energy of ``x`` below 4 kHz in 5 ms frames, on a common 8 kHz time grid (FFT truncation)."""
    spec = np.fft.rfft(x)[: int(seconds * 4000) + 1]
    low = np.fft.irfft(spec, n=int(seconds * 8000))
    return (low**2).reshape(-1, 40).sum(axis=1)


@pytest.mark.parametrize("name", ["crackle", "clicks", "thumps"])
def test_events_happen_at_the_same_seconds_at_every_rate(name):
    # Event times are physical: a seed puts the same events at the same seconds at every rate, so the
    # 5 ms energy envelopes below 4 kHz coincide (the faint floors under them are fresh noise per rate).
    # Peak samples are no measure: a band-limited edge peaks higher in a wider band.
    for seed in SEEDS:
        env = [_envelope(GENERATORS[name](np.random.default_rng(seed), 2 * sr, sr), sr, 2.0) for sr in RATES]
        for other in env[1:]:
            assert np.corrcoef(env[0], other)[0, 1] > 0.95, (name, seed)


def _default_generators() -> dict:
    return yaml.safe_load(DEFAULTS.read_text())["data"]["noise"]["procedural"]["generators"]


def test_default_ranges_are_parameters_of_their_generators():
    for name, spec in _default_generators().items():
        params = set(inspect.signature(GENERATORS[name]).parameters) - {"rng", "num_samples", "sample_rate"}
        assert set(spec) - {"weight"} <= params, name


def test_mixture_at_48_khz_is_the_same_recipe_as_at_16_khz_and_reaches_the_top_octave():
    mixture = NoiseMixture(_default_generators())
    shapes, top_db = {16000: [], 48000: []}, []
    for seed in range(12):
        labels = set()
        for sample_rate in (16000, 48000):
            x, label = mixture(np.random.default_rng(seed), 2 * sample_rate, sample_rate)
            again, _ = mixture(np.random.default_rng(seed), 2 * sample_rate, sample_rate)
            np.testing.assert_array_equal(x, again)
            assert np.all(np.isfinite(x)) and np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)
            assert set(label.split("+")) <= set(GENERATORS)
            labels.add(label)
            f, p = _psd(x, sample_rate)
            shapes[sample_rate].append([_band(f, p, lo, hi) / _band(f, p, 0.0, 7000.0) for lo, hi in OCTAVES])
            if sample_rate == 48000:
                top_db.append(10 * np.log10(_band(f, p, 11000.0, 20000.0) / _band(f, p, 1000.0, 4000.0)))
        assert len(labels) == 1, labels  # layers, levels and parameters do not depend on the rate
    low, full = np.mean(shapes[16000], axis=0), np.mean(shapes[48000], axis=0)
    assert np.all(np.abs(10 * np.log10(full / low)) < 1.0)
    # Most draws hold a broadband layer, and the mix as a whole keeps clearly measurable top-octave energy.
    assert np.median(top_db) > -25.0
