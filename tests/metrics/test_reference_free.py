"""Reference-free figures (metrics/reference_free.py) and DNSMOS (metrics/dnsmos.py) on signals with known
answers."""

import logging
import math
import sys

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt, sosfreqz

from lightning_app.data.music import synthesize_music
from lightning_app.data.speech import synthesize_speech
from lightning_app.metrics import dnsmos as D
from lightning_app.metrics import reference_free as R


def bursts(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """Speech-like bursts: harmonic syllables of 150-400 ms (-15 dBFS or so) with 100-300 ms gaps of
    silence."""
    n = int(seconds * rate)
    x, t = np.zeros(n), 0
    while t < n:
        length = min(int(rng.uniform(0.15, 0.4) * rate), n - t)
        tt = np.arange(length) / rate
        f0 = rng.uniform(100, 250)
        envelope = np.sin(np.pi * np.arange(length) / length) ** 0.5
        x[t : t + length] = 0.3 * envelope * sum(np.sin(2 * np.pi * k * f0 * tt) / k for k in range(1, 12))
        t += length + int(rng.uniform(0.1, 0.3) * rate)
    return x


def white(rng, shape, level_db):
    return 10 ** (level_db / 20) * rng.standard_normal(shape)


def with_clicks(x: np.ndarray, rate: int, count: int, rng: np.random.Generator, channel: int | None = None):
    """``count`` clicks (a 3-sample impulse, 0.1-0.5 peak, random sign) at random positions at least 30 ms
    apart."""
    grid = np.arange(int(0.05 * rate), len(x) - int(0.05 * rate), int(0.03 * rate))
    positions = np.sort(rng.choice(grid, count, replace=False))
    out = x.copy()
    for p in positions:
        click = rng.uniform(0.1, 0.5) * rng.choice([-1.0, 1.0]) * np.array([1.0, -0.6, 0.3])
        if out.ndim == 1:
            out[p : p + 3] += click
        elif channel is None:
            out[p : p + 3] += click[:, None]
        else:
            out[p : p + 3, channel] += click
    return out, positions


# --- noise floor
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2), (48000, 2)])
@pytest.mark.parametrize("level_db", [-40.0, -60.0])
def test_noise_floor_reads_the_noise_between_bursts(rate, channels, level_db):
    rng = np.random.default_rng(int(rate + level_db))
    speech = bursts(rng, 8.0, rate)
    noise = white(rng, (len(speech), channels), level_db)
    before = speech[:, None] + noise if channels > 1 else speech + noise[:, 0]
    estimate = R.noise_floor_db(before, rate)
    assert abs(estimate - level_db) < 1.5, estimate  # measured: 0.15-0.3 dB low
    # A restoration that takes the noise down 20 dB: the floor drops 20 dB; one that removes it all: digital
    # silence.
    less = speech[:, None] + 0.1 * noise if channels > 1 else speech + 0.1 * noise[:, 0]
    assert R.noise_floor_db(less, rate) - estimate == pytest.approx(-20.0, abs=1.0)
    assert R.noise_floor_db(speech, rate) == R.FLOOR_DB
    # Digital padding at the ends is not the recording.
    pad = np.zeros((rate, channels)) if channels > 1 else np.zeros(rate)
    assert R.noise_floor_db(np.concatenate([pad, before, pad]), rate) == pytest.approx(estimate, abs=0.05)


def test_noise_floor_of_steady_noise_and_short_signals():
    rng = np.random.default_rng(0)
    assert R.noise_floor_db(white(rng, 5 * 16000, -30.0), 16000) == pytest.approx(
        -30.0, abs=0.8
    )  # ~0.6 dB low
    assert R.noise_floor_db(np.full(100, 0.1), 16000) == pytest.approx(
        -20.0, abs=1e-6
    )  # shorter than a frame
    assert R.noise_floor_db(np.zeros(16000), 16000) == R.FLOOR_DB
    with pytest.raises(ValueError, match="NaN or Inf"):
        R.noise_floor_db(np.r_[np.zeros(10), np.nan], 16000)
    with pytest.raises(ValueError, match="frames"):
        R.noise_floor_db(np.zeros((2, 2, 2)), 16000)


# --- clicks
# -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate,channels", [(16000, 1), (44100, 2), (48000, 1)])
def test_click_rate_counts_known_clicks_on_tone_and_noise(rate, channels):
    rng = np.random.default_rng(rate)
    seconds, count = 10.0, 40
    t = np.arange(int(seconds * rate)) / rate
    base = 0.3 * np.sin(2 * np.pi * 440 * t) + white(rng, len(t), -40.0)
    if channels > 1:
        base = np.stack([base, 0.8 * base + white(rng, len(t), -40.0)], axis=1)
    clicked, positions = with_clicks(base, rate, count, rng)
    detected = R.click_positions(clicked, rate)
    assert abs(len(detected) - count) <= 0.1 * count, len(detected)  # measured: 39-40 of 40
    # ... and where they are: each detected click within 1 ms of a true one.
    assert np.all(np.min(np.abs(detected[:, None] - positions[None, :]), axis=1) <= 0.001 * rate)
    assert R.click_rate(clicked, rate) == pytest.approx(len(detected) / seconds)
    assert R.click_rate(base, rate) < 0.2  # measured: 0
    if channels > 1:  # a click on one channel only counts once, like one on both
        one_side, _ = with_clicks(base, rate, count, np.random.default_rng(1), channel=1)
        assert abs(R.click_rate(one_side, rate) * seconds - count) <= 0.1 * count


def test_click_rate_ignores_voices_music_and_steady_noise():
    """Glottal pulses, attacks and hiss are not clicks (measured: 0-0.1 false clicks/s on these)."""
    rate, n = 44100, 10 * 44100
    rng = np.random.default_rng(3)
    for seed in (0, 1, 4):
        speech = synthesize_speech(np.random.default_rng(seed), n, rate) + white(rng, n, -60.0)
        assert R.click_rate(speech, rate) <= 0.3
        assert R.click_rate(synthesize_music(np.random.default_rng(seed), n, rate), rate) <= 0.3
    assert R.click_rate(white(rng, (n, 2), -30.0), rate) == 0.0
    assert R.click_rate(np.zeros(n), rate) == 0.0


# --- level and bands
# ----------------------------------------------------------------------------------------------


def test_level_change_db():
    x = white(np.random.default_rng(0), (16000, 2), -20.0)
    assert R.level_change_db(x, 0.5 * x) == pytest.approx(20 * math.log10(0.5), abs=1e-9)
    assert R.level_change_db(x, x[:, :1]) == pytest.approx(
        0.0, abs=0.1
    )  # mono out of stereo: channels pooled
    assert R.level_change_db(np.zeros(100), np.zeros(100)) == 0.0  # both clamped at -120 dBFS


def test_band_energy_removed_by_a_known_low_pass():
    rate = 44100
    rng = np.random.default_rng(0)
    before = white(rng, (10 * rate, 2), -20.0)
    sos = butter(6, 1000.0, fs=rate, output="sos")
    after = sosfiltfilt(sos, before, axis=0)  # |H|^4 in power
    removed = R.band_energy_removed(before, after, rate)
    assert list(removed) == ["0_100", "100_500", "500_2k", "2k_6k", "6k_nyq"]
    # Expected per band for white noise: 1 - mean |H(f)|^4 over the band.
    f, h = sosfreqz(sos, worN=1 << 16, fs=rate)
    for (low, high), key in zip(R.BANDS, removed, strict=True):
        inside = (f >= low) & (f < (high or rate / 2))
        assert removed[key] == pytest.approx(1 - np.mean(np.abs(h[inside]) ** 4), abs=0.02), key
    assert abs(removed["0_100"]) < 0.02 and abs(removed["100_500"]) < 0.02  # measured: < 0.005
    assert removed["2k_6k"] > 0.99 and removed["6k_nyq"] > 0.999
    # A gain: 0.5x removes 75 % everywhere; 2x adds 300 % (negative: energy added).
    assert all(
        v == pytest.approx(0.75, abs=1e-6) for v in R.band_energy_removed(before, 0.5 * before, rate).values()
    )
    assert all(
        v == pytest.approx(-3.0, abs=1e-5) for v in R.band_energy_removed(before, 2 * before, rate).values()
    )


def test_bands_follow_the_rate_and_empty_bands_are_nan():
    rng = np.random.default_rng(1)
    assert list(R.band_energy_removed(white(rng, 8000, -20), white(rng, 8000, -26), 8000)) == [
        "0_100",
        "100_500",
        "500_2k",
        "2k_6k",
    ]  # 6k-Nyquist is above 4 kHz: left out; 2k-6k ends at 4 kHz
    assert (
        R.band_name(0, 100) == "0_100"
        and R.band_name(2000, 6000) == "2k_6k"
        and R.band_name(6000, None) == "6k_nyq"
    )
    rate = 16000
    t = np.arange(2 * rate) / rate
    tone = np.sin(2 * np.pi * 300 * t)  # nothing above 500 Hz but the window's leakage
    out = R.band_energy_removed(tone, 0.5 * tone, rate)
    assert out["100_500"] == pytest.approx(0.75, abs=1e-6)
    assert math.isnan(out["6k_nyq"])


# --- figures
# ------------------------------------------------------------------------------------------------------


def test_figures_of_a_restoration(monkeypatch):
    rate, channels = 44100, 2
    rng = np.random.default_rng(7)
    speech = np.stack([bursts(rng, 10.0, rate)] * channels, axis=1)
    noise = white(rng, speech.shape, -45.0)
    before, _ = with_clicks(speech + noise, rate, 30, rng)
    after = speech + 0.05 * noise  # the clicks gone, the hiss down 26 dB
    monkeypatch.setattr(D, "score", lambda *a: pytest.fail("DNSMOS must not run on music"))
    out = R.figures(before, after, rate, content="music")
    bands = ["0_100", "100_500", "500_2k", "2k_6k", "6k_nyq"]
    assert list(out) == [
        "noise_floor_db_before",
        "noise_floor_db_after",
        "noise_floor_change_db",
        "click_rate_before",
        "click_rate_after",
        "level_db_before",
        "level_db_after",
        "level_change_db",
        *[f"removed_{b}" for b in bands],
        *[f"dnsmos_{m}_{w}" for w in ("before", "after") for m in ("sig", "bak", "ovrl")],
    ]
    assert all(isinstance(v, float) for v in out.values())
    assert out["noise_floor_db_before"] == pytest.approx(-45.0, abs=1.5)
    assert out["noise_floor_change_db"] == pytest.approx(20 * math.log10(0.05), abs=1.5)
    assert out["click_rate_before"] == pytest.approx(3.0, abs=0.3) and out["click_rate_after"] == 0.0
    assert -0.5 < out["level_change_db"] < 0.0
    assert out["level_db_after"] - out["level_db_before"] == pytest.approx(out["level_change_db"])
    assert -40.0 < out["level_db_after"] < 0.0
    assert (
        out["removed_6k_nyq"] > 0.9
    )  # above 6 kHz the bursts have almost nothing: hiss and clicks were removed
    assert abs(out["removed_100_500"]) < 0.05  # the voices' fundamentals are kept
    assert all(math.isnan(out[k]) for k in out if k.startswith("dnsmos_"))
    assert set(out) == set(R.figures(before, after, rate, dnsmos=False))


# --- DNSMOS
# -------------------------------------------------------------------------------------------------------


def test_dnsmos_refuses_music_and_says_when_it_is_missing(monkeypatch):
    assert (
        D.content_refusal("speech") is None and D.content_refusal(None) is None
    )  # unlabelled: the suite's rule
    assert "speech measure" in D.content_refusal("music")
    scores, reason = D.dnsmos_for_content(np.zeros(16000), 16000, "music")
    assert scores is None and "speech measure" in reason and "music" in reason
    D.dnsmos_missing.cache_clear()
    monkeypatch.setitem(sys.modules, "speechmos.dnsmos", None)  # an import of it now fails
    try:
        reason = D.dnsmos_missing()
        assert reason.startswith("DNSMOS needs the 'dnsmos' extra") and D.skip_reason("speech") == reason
        scores, why = D.score(np.ones(32000) * 0.1, 16000)
        assert why == reason and all(math.isnan(v) for v in scores.values())
    finally:
        D.dnsmos_missing.cache_clear()


@pytest.fixture(scope="module")
def speech_16k():
    pytest.importorskip("speechmos", reason="DNSMOS needs the 'dnsmos' extra (speechmos)")
    pytest.importorskip("onnxruntime", reason="DNSMOS needs the 'dnsmos' extra (onnxruntime)")
    return synthesize_speech(np.random.default_rng(2), 10 * 16000, 16000).astype(np.float64)


def test_dnsmos_scores_speech_and_hears_the_noise(speech_16k):
    rng = np.random.default_rng(0)
    clean = D.dnsmos(speech_16k, 16000)
    noisy = D.dnsmos(speech_16k + white(rng, len(speech_16k), -30.0), 16000)
    assert set(clean) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}
    for scores in (clean, noisy):
        assert all(math.isfinite(v) and 1.0 <= v <= 5.0 for v in scores.values()), scores
    # measured: BAK 3.97 clean vs 2.22 noisy, OVRL 2.78 vs 2.14
    assert noisy["dnsmos_bak"] < clean["dnsmos_bak"] - 0.5
    assert noisy["dnsmos_ovrl"] < clean["dnsmos_ovrl"]
    # Any rate and channel count: 44.1 kHz stereo of the same clip is resampled to 16 kHz mono; close to the
    # original.
    from lightning_app.data.audio_io import resample

    stereo = np.repeat(resample(speech_16k.astype(np.float32), 16000, 44100)[:, None], 2, axis=1)
    scores, reason = D.dnsmos_for_content(stereo, 44100, "speech")
    assert reason is None
    assert all(scores[k] == pytest.approx(clean[k], abs=0.15) for k in scores)


def test_dnsmos_never_raises_on_a_bad_clip(speech_16k, monkeypatch, caplog):
    for bad, why in (
        (speech_16k[:8000], "shorter than 1 s"),
        (np.zeros(32000), "silent clip"),
        (np.r_[speech_16k, np.nan], "NaN or Inf samples"),
    ):
        scores, reason = D.score(bad, 16000)
        assert reason == why and all(math.isnan(v) for v in scores.values())
    # Out of [-1, 1]: divided by its peak, not refused.
    assert all(math.isfinite(v) for v in D.score(3.0 * speech_16k, 16000)[0].values())
    import speechmos.dnsmos

    monkeypatch.setattr(
        speechmos.dnsmos, "run", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("model broke"))
    )
    with caplog.at_level(logging.WARNING, logger="lightning_app.metrics.dnsmos"):
        scores = D.dnsmos(speech_16k, 16000)
    assert all(math.isnan(v) for v in scores.values())
    assert "RuntimeError: model broke" in caplog.text


def test_long_clips_are_scored_on_a_bounded_number_of_windows(monkeypatch):
    seen = []
    monkeypatch.setattr(D, "dnsmos_missing", lambda: None)
    fake = type(sys)("speechmos.dnsmos")
    fake.run = lambda audio, rate: (
        seen.append(len(audio)) or {"sig_mos": 3.0, "bak_mos": 4.0, "ovrl_mos": 2.5}
    )
    monkeypatch.setitem(sys.modules, "speechmos", type(sys)("speechmos"))
    sys.modules["speechmos"].dnsmos = fake
    monkeypatch.setitem(sys.modules, "speechmos.dnsmos", fake)
    x = 0.1 * np.sin(np.arange(180 * 16000) * 0.05)
    assert D.score(x, 16000) == ({"dnsmos_sig": 3.0, "dnsmos_bak": 4.0, "dnsmos_ovrl": 2.5}, None)
    assert seen == [int(D.WINDOW_S * 16000)] * D.MAX_WINDOWS
    seen.clear()
    D.score(x[: 15 * 16000], 16000)
    assert seen == [15 * 16000]  # up to ~18 s: the whole clip, as speechmos scores it
