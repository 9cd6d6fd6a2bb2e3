"""Per-content metrics, the per-content muting alarm, speech-only PESQ/STOI and ViSQOL, on hand-made
batches.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from lightning_app.data.speech import synthesize_speech
from lightning_app.metrics import visqol as V
from lightning_app.training.callbacks.quality import OverSuppressionAlarm, PerceptualQuality, WaveformQuality
from tests.helpers import Recorder

SR = 16000


def chord(seconds: float, rate: int = SR, seed: int = 0) -> np.ndarray:
    """Music-like test audio: a decaying three-note chord, re-struck every half second."""
    t = np.arange(int(seconds * rate)) / rate
    notes = sum(np.sin(2 * np.pi * f * t) / (k + 1) for k, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    envelope = np.exp(-3 * (t % 0.5))
    return (0.2 * notes * envelope + 0.001 * np.random.default_rng(seed).standard_normal(len(t))).astype(
        np.float32
    )


def speech(seconds: float, seed: int) -> np.ndarray:
    return synthesize_speech(np.random.default_rng(seed), int(seconds * SR), SR).astype(np.float32)


def trainer(fn="validate", **metrics):
    return SimpleNamespace(
        state=SimpleNamespace(fn=fn),
        sanity_checking=False,
        current_epoch=0,
        max_epochs=1,
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
    )


def batch_of(cleans, contents, noise_level=0.05, gains=None):
    """(batch, outputs): noisy = clean + noise, the 'model' output = gain * clean + a little noise."""
    rng = np.random.default_rng(1)
    clean = torch.from_numpy(np.stack(cleans))[:, None]
    noisy = clean + noise_level * torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32))
    gains = torch.tensor(gains or [1.0] * len(cleans))[:, None, None]
    estimate = gains * clean + 0.3 * (noisy - clean)
    batch = {"clean": clean, "noisy": noisy, "index": torch.arange(len(cleans)), "content": list(contents)}
    return batch, {"estimate": estimate}


def test_per_content_waveform_metrics_equal_the_means_over_each_content():
    seconds = 1.0
    cleans = [
        speech(seconds, 0),
        chord(seconds, seed=1),
        speech(seconds, 2),
        chord(seconds, seed=3),
        speech(seconds, 4),
    ]
    contents = ["speech", "music", "speech", "music", "speech"]
    batch, outputs = batch_of(cleans, contents, gains=[1.0, 0.4, 0.9, 0.5, 1.1])
    callback, module = WaveformQuality(contents=("speech", "music", "bells")), Recorder()
    # Two batches, as an epoch would bring them.
    for part in (slice(0, 3), slice(3, 5)):
        part_batch = {k: v[part] for k, v in batch.items()}
        callback.on_validation_batch_end(None, module, {"estimate": outputs["estimate"][part]}, part_batch, 0)
    callback.on_validation_epoch_end(trainer(), module)
    log = module.logged

    si_sdr_i = (
        (
            scale_invariant_signal_distortion_ratio(outputs["estimate"], batch["clean"])
            - scale_invariant_signal_distortion_ratio(batch["noisy"], batch["clean"])
        )
        .reshape(-1)
        .double()
    )
    retention = outputs["estimate"].pow(2).mean((1, 2)).sqrt() / batch["clean"].pow(2).mean((1, 2)).sqrt()
    for content in ("speech", "music"):
        members = torch.tensor([c == content for c in contents])
        assert log[f"val/si_sdr_i/{content}"] == pytest.approx(float(si_sdr_i[members].mean()), abs=1e-3)
        assert log[f"val/amplitude_retention/{content}"] == pytest.approx(
            float(retention[members].mean()), rel=1e-4
        )
        assert log[f"val_status/clips/{content}"] == members.sum()
    assert log["val/si_sdr_i"] == pytest.approx(float(si_sdr_i.mean()), abs=1e-3)  # overall name unchanged
    assert log["val_status/clips"] == 5
    assert not any(k.endswith("/bells") for k in log), "a content with no clips is not logged"
    assert (
        math.isfinite(log["val/lsd/music"]) and log["val/lsd_i"] > 0
    )  # the output is closer to clean than the input


def test_batches_without_content_labels_give_overall_metrics_only():
    batch, outputs = batch_of([speech(1.0, 0), chord(1.0)], ["speech", "music"])
    del batch["content"]
    callback, module = WaveformQuality(contents=("speech", "music")), Recorder()
    callback.on_validation_batch_end(None, module, outputs, batch, 0)
    callback.on_validation_epoch_end(trainer(), module)
    assert "val/si_sdr_i" in module.logged and not any(k.count("/") > 1 for k in module.logged)


def test_the_muting_alarm_names_the_muted_content_only():
    alarm, module = OverSuppressionAlarm(threshold=0.5, contents=("speech", "music")), Recorder()
    metrics = {
        "val/amplitude_retention": 0.62,
        "val/amplitude_retention/speech": 0.97,
        "val/amplitude_retention/music": 0.12,
    }
    with pytest.warns(UserWarning, match=r"OVER-SUPPRESSION of music: .*music 0\.12"):
        alarm.on_validation_epoch_end(trainer(**metrics), module)
    assert module.logged == {
        "val_status/muting_alarm": 1.0,
        "val_status/muting_alarm/speech": 0.0,
        "val_status/muting_alarm/music": 1.0,
    }

    fine = Recorder()
    alarm.on_validation_epoch_end(trainer(**{**metrics, "val/amplitude_retention/music": 0.9}), fine)
    assert fine.logged["val_status/muting_alarm"] == 0.0 and alarm.alarms == 1


def validate_once(callback, module, outputs, batch):
    """One validation batch and epoch end through a set-up PerceptualQuality; its worker pool is shut
    after."""
    try:
        callback.on_validation_batch_end(trainer(), module, outputs, batch, 0)
        callback.on_validation_epoch_end(trainer(), module)
    finally:
        callback.teardown(None, module, "validate")


@pytest.mark.slow
def test_pesq_and_stoi_score_speech_clips_only_and_visqol_every_content():
    cleans = [speech(1.0, 0), chord(1.0), speech(1.0, 2)]
    batch, outputs = batch_of(cleans, ["speech", "music", "speech"])
    callback = PerceptualQuality(SR, clips=3, workers=1, contents=("speech", "music"), visqol_clips=2)
    module = Recorder()
    callback.setup(None, module, "validate")
    validate_once(callback, module, outputs, batch)
    log = module.logged
    assert log["val_status/speech_clips"] == 2 and log["val_status/perceptual_clips"] == 3
    assert log["val_status/visqol_clips"] == 2
    assert "val/pesq/music" not in log and "val/stoi/music" not in log, "a music clip gets no PESQ/STOI"
    assert log["val/pesq"] == pytest.approx(log["val/pesq/speech"]) and log["val/pesq_i"] > 0
    assert math.isfinite(log["val/stoi/speech"])
    # ViSQOL: clips 0 (speech) and 1 (music), not clip 2.
    assert 1.0 <= log["val/visqol/music"] <= 5.0 and 1.0 <= log["val/visqol/speech"] <= 5.0
    assert log["val/visqol"] == pytest.approx((log["val/visqol/music"] + log["val/visqol/speech"]) / 2)
    assert log["val_status/visqol_failures"] == 0 and log["val_status/pesq_failures"] == 0


def test_unlabelled_clips_keep_the_old_behaviour_and_a_missing_visqol_is_said_once(monkeypatch):
    import lightning_app.training.callbacks.quality as Q

    monkeypatch.setattr(Q, "visqol_missing", lambda: V.MISSING)
    batch, outputs = batch_of([speech(1.0, 0)], ["x"])
    del batch["content"]
    callback, module = PerceptualQuality(SR, clips=1, workers=1, visqol_clips=4), Recorder()
    with pytest.warns(
        UserWarning, match=r"ViSQOL skipped: .*pip install -c constraints.txt -e '\.\[visqol\]'"
    ):
        callback.setup(None, module, "validate")
    validate_once(callback, module, outputs, batch)
    assert math.isfinite(module.logged["val/pesq"]) and module.logged["val_status/speech_clips"] == 1
    assert not any(k.startswith("val/visqol") for k in module.logged), (
        "ViSQOL off: not logged as NaN or failures"
    )


def test_visqol_ranks_clean_above_degraded_above_noisier():
    clean = chord(1.5)
    noise = np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    scores = {}
    for name, degraded in (
        ("self", clean),
        ("degraded", clean + 0.01 * noise),
        ("noisier", clean + 0.05 * noise),
    ):
        scores[name], error = V.safe_visqol(clean, degraded, SR)
        assert error is None, error
    assert 4.0 < scores["self"] <= 5.0
    assert scores["self"] > scores["degraded"] > scores["noisier"] >= 1.0
    # Level-blind: a tenth of the clean signal scores as the clean signal (hence retention, next to it).
    assert V.safe_visqol(clean, 0.1 * clean, SR)[0] == pytest.approx(scores["self"], abs=0.05)


def test_visqol_failures_are_nan_and_a_reason(monkeypatch):
    clean = chord(1.5)
    for reference, degraded, reason in (
        (np.zeros_like(clean), clean, "silent reference"),
        (clean, np.zeros_like(clean), "silent output"),
        (clean[:8000], clean[:8000], "shorter than 1 s"),
        (clean, np.full_like(clean, np.nan), "non-finite samples"),
    ):
        score, error = V.safe_visqol(reference, degraded, SR)
        assert math.isnan(score) and error == reason

    import builtins

    real_import = builtins.__import__

    def no_visqol(name, *args, **kwargs):
        if name == "visqol":
            raise ImportError("No module named 'visqol'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(V, "_api", None)
    monkeypatch.setattr(builtins, "__import__", no_visqol)
    score, error = V.safe_visqol(clean, clean, SR)
    assert math.isnan(score) and "pip install -c constraints.txt -e '.[visqol]'" in error

    class Broken:
        def measure_from_arrays(self, *_):
            raise RuntimeError("library failure")

    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setattr(V, "_api", Broken())
    score, error = V.safe_visqol(clean, clean, SR)
    assert math.isnan(score) and error == "RuntimeError: library failure"
