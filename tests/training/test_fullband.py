"""The full-band archive experiment: composes, trains a step at 44.1 kHz, restores 48 kHz transfers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_app import denoise
from lightning_app.restoring.engine import Restorer
from lightning_app.systems.checkpoints import load_system
from tests.helpers import smoke_config


@pytest.fixture(scope="module")
def fullband_run(tmp_path_factory):
    from lightning_app.training.run import train

    root = tmp_path_factory.mktemp("fullband")
    cfg = smoke_config(root, "trainer.max_epochs=1", "data.source_bank=16", experiment="archive_fullband")
    return cfg, train(cfg)


def test_archive_fullband_composes_as_documented():
    from lightning_app import config as C

    cfg = C.compose("archive_fullband")
    assert cfg.data.sample_rate == 44100
    assert dict(cfg.data.clean.mix) == {"speech": 0.35, "music": 0.65, "real_speech": 0.0, "real_music": 0.0}
    assert cfg.data.clean.recording.room_probability > 0 and cfg.data.clean.recording.era_weights.acoustic > 0
    assert cfg.model.spectral_unet.n_fft == 2048 and cfg.model.spectral_unet.freq_patch == 4


@pytest.mark.slow
def test_a_tiny_training_run_at_44k_labels_contents(fullband_run):
    cfg, result = fullband_run
    system = load_system(result["best"])
    assert system.sample_rate == 44100
    from lightning_app.training.run import build_datamodule

    datamodule = build_datamodule(cfg, system)
    datamodule.setup("fit")
    assert {datamodule.val_set[i]["content"] for i in range(len(datamodule.val_set))} == {"speech", "music"}
    assert np.isfinite(result["metrics"]["val/si_sdr"])


@pytest.mark.slow
def test_a_48k_stereo_transfer_is_restored_by_the_44k_model(tmp_path, fullband_run):
    _, result = fullband_run
    rate, seconds = 48000, 1.2
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(0)
    # A 440 Hz note plus hiss, and a 23 kHz tone above the model's 22.05 kHz Nyquist.
    channels = [
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.02 * rng.standard_normal(len(t))
        + 0.05 * np.sin(2 * np.pi * 23000 * t)
        for _ in range(2)
    ]
    audio = np.stack(channels, axis=1).astype(np.float32)
    src = tmp_path / "transfer.wav"
    sf.write(src, audio, rate, subtype="PCM_24")
    assert (
        denoise.main([str(src), "--checkpoint", result["best"], "--output-dir", str(tmp_path / "out")]) == 0
    )
    out, out_rate = sf.read(tmp_path / "out" / "transfer.wav", always_2d=True)
    assert out_rate == rate and out.shape == audio.shape and np.all(np.isfinite(out))

    system = load_system(result["best"])

    def top_band(x):
        spectrum = np.abs(np.fft.rfft(x[:, 0]))
        freqs = np.fft.rfftfreq(len(x), 1 / rate)
        return spectrum[(freqs > 22500) & (freqs < 23500)].max()

    passed = Restorer(system, high_band="pass")(audio, rate)
    dropped = Restorer(system, high_band="drop")(audio, rate)
    assert top_band(passed) == pytest.approx(top_band(audio), rel=0.05), (
        "above the model's band the input passes"
    )
    # (the resampler's transition band, 0.99 x Nyquist, leaves a little just above 22.05 kHz)
    assert top_band(dropped) < 0.2 * top_band(audio), "high_band=drop removes what the model cannot see"
    # The model's own band went through the model: the output differs from the input there.
    assert not torch.allclose(torch.from_numpy(passed), torch.from_numpy(audio), atol=1e-4)


@pytest.mark.slow
def test_noise2noise_with_music_composes_and_steps_at_44k_with_leakage_measured(tmp_path):
    from lightning_app.training.run import train

    cfg = smoke_config(
        tmp_path,
        "trainer.max_epochs=1",
        "data.source_bank=16",
        "data.val_clips=4",
        experiment="noise2noise_fullband",
    )
    assert (cfg.data.sample_rate, cfg.system.kind, cfg.model.kind) == (44100, "noise2noise", "cross_domain")
    assert cfg.data.clean.mix.music > cfg.data.clean.mix.speech > 0
    metrics = train(cfg)["metrics"]
    for key in (
        "val/leakage",
        "val/residual_noise",
        "val/si_sdr_i/music",
        "val/si_sdr_i/speech",
        "val/amplitude_retention/music",
    ):
        assert math.isfinite(metrics[key]), key
    assert metrics["val_status/clips/music"] + metrics["val_status/clips/speech"] == 4
