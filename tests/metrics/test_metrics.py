"""Each metric against a reference computation, and the failure handling of PESQ/STOI."""

import math

import numpy as np
import pytest
import torch
from pesq import pesq
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio, signal_noise_ratio

from lightning_app.data.speech import synthesize_speech
from lightning_app.metrics import functional as MF
from lightning_app.metrics.perceptual import score_clip
from lightning_app.metrics.quality import ClipMeans, waveform_scores
from lightning_app.systems import losses

SR = 16000


@pytest.fixture(scope="module")
def speech():
    clean = torch.from_numpy(synthesize_speech(np.random.default_rng(5), 3 * SR, SR)).reshape(1, 1, -1)
    noise = 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    return clean, clean + noise


def test_si_sdr_and_snr_match_torchmetrics(speech):
    clean, noisy = speech
    est = torch.cat([noisy, 0.5 * noisy, clean + 0.2 * (noisy - clean)])
    ref = clean.expand_as(est)
    torch.testing.assert_close(
        MF.si_sdr(est, ref).double(),
        scale_invariant_signal_distortion_ratio(est, ref).reshape(-1).double(),
        atol=1e-3,
        rtol=0,
    )
    torch.testing.assert_close(
        MF.snr(est, ref), signal_noise_ratio(est, ref).reshape(-1).double(), atol=1e-3, rtol=0
    )


def test_amplitude_retention_speech_removed_and_spectral_correlation(speech):
    clean, noisy = speech
    assert float(MF.amplitude_retention(0.1 * clean, clean)) == pytest.approx(0.1, rel=1e-6)
    # Removing exactly the noise removes no speech; muting removes all of it.
    assert float(MF.speech_removed(clean, noisy, clean)) < 0.05
    muted = float(MF.speech_removed(torch.zeros_like(clean), noisy, clean))
    assert muted == pytest.approx(float(MF.pearson(noisy, clean).abs()), abs=1e-9) and muted > 0.5
    assert float(MF.spectral_correlation(clean, clean)) == pytest.approx(1.0, abs=1e-9)
    assert float(MF.spectral_correlation(torch.randn_like(clean), clean)) < 0.5


def test_silent_clean_clips_are_excluded_not_averaged(speech):
    clean, noisy = speech
    clean2 = torch.cat([clean, torch.zeros_like(clean)])
    noisy2 = torch.cat([noisy, noisy])
    scores, silent = waveform_scores(noisy2, noisy2, clean2, silent_rms=1e-4)
    assert silent.tolist() == [False, True]
    assert math.isnan(float(scores["si_sdr"][1])) and math.isfinite(float(scores["si_sdr"][0]))
    means = ClipMeans(["si_sdr"], counters=["silent_clips"])
    means.update({"si_sdr": scores["si_sdr"]}, {"silent_clips": int(silent.sum())})
    out = means.compute()
    assert out["si_sdr"] == pytest.approx(float(scores["si_sdr"][0]))
    assert out["silent_clips"] == 1


def test_losses_point_the_right_way(speech):
    clean, noisy = speech
    for name, fn in losses.WAVEFORM_LOSSES.items():
        assert float(fn(clean, clean)) <= float(fn(noisy, clean)) + 1e-6, name
    # The research's lesson: MAE prefers a muted output over a noisy one at low SNR ...
    very_noisy = clean + 0.5 * torch.randn_like(clean)
    assert float(losses.waveform_l1(0 * clean, clean)) < float(losses.waveform_l1(very_noisy, clean))
    # ... which the energy term penalises.
    assert float(losses.energy_preservation(0.1 * clean, clean)) > 2.0


def test_perceptual_scores_match_pesq_and_fail_softly(speech):
    clean, noisy = (x.numpy().ravel() for x in speech)
    result = score_clip(clean, noisy, clean, SR)
    assert result["pesq"] == pytest.approx(4.64, abs=0.05)  # identical signal: PESQ's ceiling
    assert result["input_pesq"] == pytest.approx(pesq(SR, clean, noisy, "wb"), abs=1e-6)
    assert result["stoi"] > 0.99 and result["input_stoi"] < result["stoi"]
    muted = score_clip(clean, noisy, np.zeros_like(clean), SR)
    assert math.isnan(muted["pesq"]) and muted["pesq_error"] == "silent output"
    silent_ref = score_clip(np.zeros_like(clean), noisy, noisy, SR)
    assert math.isnan(silent_ref["pesq"]) and silent_ref["pesq_error"] == "silent reference"
    short = score_clip(clean[:1000], noisy[:1000], clean[:1000], SR)
    assert math.isnan(short["pesq"]) and math.isnan(short["stoi"])


def test_perceptual_scores_resample_other_rates(speech):
    import torchaudio.functional as AF

    clean, noisy = speech
    c44, n44 = (AF.resample(x.reshape(-1), SR, 44100).numpy() for x in (clean, noisy))
    result = score_clip(c44, n44, c44, 44100)
    assert math.isfinite(result["pesq"]) and result["pesq"] > result["input_pesq"]


def test_log_spectral_distance_matches_a_numpy_reference(speech):
    clean, noisy = speech
    n_fft, hop = 512, 128

    def reference(estimate, target):
        def power(x):
            frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, n_fft // 2, mode="reflect"), n_fft)[
                ::hop
            ]
            window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
            return np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, freq)

        floor = power(target).max() * 1e-8  # 80 dB below the target's loudest bin
        log_target, log_estimate = (10 * np.log10(np.maximum(power(x), floor)) for x in (target, estimate))
        return np.mean(np.sqrt(np.mean((log_target - log_estimate) ** 2, axis=1)))

    c, n = clean.double().numpy().ravel(), noisy.double().numpy().ravel()
    for estimate in (n, 0.5 * c, c + 0.01 * np.sin(np.arange(len(c)))):
        got = float(
            MF.log_spectral_distance(torch.from_numpy(estimate)[None], clean.reshape(1, -1), n_fft, hop)[0]
        )
        assert got == pytest.approx(reference(estimate, c), rel=1e-6, abs=1e-6)
    assert float(MF.log_spectral_distance(clean, clean, n_fft, hop)[0]) == 0.0
    same = MF.log_spectral_distance(torch.from_numpy(n)[None], clean.reshape(1, -1), n_fft, hop)
    torch.testing.assert_close(
        MF.log_spectral_distance(0.01 * torch.from_numpy(n)[None], 0.01 * clean.reshape(1, -1), n_fft, hop),
        same,
    )  # a gain on both changes nothing
    assert float(MF.log_spectral_distance(0.5 * noisy, noisy, n_fft, hop)[0]) == pytest.approx(
        6.02, abs=0.01
    )  # -6 dB
    assert (MF.lsd_fft_size(16000), MF.lsd_fft_size(44100), MF.lsd_fft_size(48000)) == (512, 2048, 2048)
    scores, _ = waveform_scores(noisy, noisy, clean, silent_rms=1e-4)
    assert float(scores["lsd_i"][0]) == 0.0 and float(scores["lsd"][0]) > 0


def test_a_clip_counts_as_worse_than_its_input_only_below_the_input_by_more_than_half_a_db():
    rng = torch.Generator().manual_seed(3)
    clean = torch.randn(4, 1, 8000, generator=rng)
    noise = torch.randn(4, 1, 8000, generator=rng)
    noisy = clean + 0.3 * noise
    # the input itself (0 dB), a little worse (-0.3 dB), much worse (more noise), better (less noise)
    estimates = torch.stack([noisy[0], noisy[1] + 0.012 * noise[1], clean[2] + 0.9 * noise[2], clean[3]])
    scores, _ = waveform_scores(estimates, noisy, clean, silent_rms=1e-4)
    gains = scores["si_sdr_i"].tolist()
    assert gains[0] == pytest.approx(0.0, abs=1e-6) and -0.5 < gains[1] < -0.05, gains
    assert gains[2] < -5 and gains[3] > 5, gains
    assert scores["worse_than_input"].tolist() == [0.0, 0.0, 1.0, 0.0]
    silent, _ = waveform_scores(estimates, noisy, torch.zeros_like(clean), silent_rms=1e-4)
    assert torch.isnan(silent["worse_than_input"]).all(), "a silent reference is left out, not counted"


def test_content_means_take_an_epoch_with_no_clips():
    """A perceptual pass with nothing to score (metrics.perceptual_clips=0, visqol_clips=0) updates the
    per-content means with empty batches: NaN means and zero counts, not an indexing error."""
    import torch

    from lightning_app.metrics.quality import ContentMeans

    means = ContentMeans(
        ["pesq"], counters=["clips"], contents=("speech", "music"), content_counters=("clips",)
    )
    empty = torch.tensor([], dtype=torch.float64)
    means.update({"pesq": empty}, {"clips": empty}, [])
    values = means.compute()
    assert values["clips"] == 0 and values["pesq"] != values["pesq"]  # NaN
