"""What a user sees first: TensorBoard's HParams and layout, the terminal's epoch line, no third-party
noise.
"""

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from lightning_app import config as C
from lightning_app.evaluation import spectrograms
from lightning_app.training import console, dashboard
from lightning_app.training.callbacks.console import summary_line


def test_hparams_show_what_tells_runs_apart_and_not_every_default():
    cfg = C.compose("pure_noise2noise", ["optim.weight_decay=0.05"])
    shown = dashboard.hparams(cfg)
    assert list(shown)[:5] == ["Experiment", "Variant", "Loss", "Budget", "Data"]
    assert sorted(shown)[:5] == sorted(list(shown)[:5]), (
        "TensorBoard sorts by name and shows five: these first"
    )
    assert shown["Variant"] == "N2N cross-domain"
    assert shown["Loss"] == "1·cross"
    assert dashboard.hparams(C.compose("progressive_stage1"))["Loss"] == "1·content + 1·recon + 1·cross"
    assert shown["optim.weight_decay"] == 0.05, "a changed key is shown"
    assert shown["model.cross_domain.latent_channels"] == 128 and "system.noise2noise.cross" in shown
    assert "checkpoint.mode" not in shown and "data.cache_dir" not in shown, (
        "unchanged defaults and paths are not"
    )
    assert not [k for k in shown if k.startswith("system.supervised.")], (
        "the other system's loss is not shown"
    )
    assert not [k for k in shown if k.startswith("model.spectral_unet.")], "nor the other network's settings"
    assert len(shown) < 80, "the keys files set, not every default"

    supervised = dashboard.hparams(C.compose("supervised_unet"))
    assert "model.spectral_unet.n_fft" in supervised
    assert not [k for k in supervised if k.startswith("model.cross_domain.")], (
        "a network the run does not use"
    )


def test_the_declared_metrics_follow_the_variant_and_the_content():
    music = dashboard.declared_metrics(C.compose("archive_fullband"))
    assert {
        "val/si_sdr_i/music",
        "val/si_sdr_i/speech",
        "val/amplitude_retention/music",
        "val/pesq",
        "val/visqol/music",
        "val_status/muting_alarm",
    } <= set(music)
    assert "val/leakage" not in music
    n2n = dashboard.declared_metrics(C.compose("pure_noise2noise", ["metrics.visqol_clips=0"]))
    assert "val/leakage" in n2n and not [m for m in n2n if "visqol" in m]


def test_the_custom_scalars_layout_opens_on_quality_and_overlays_each_loss_term():
    layout = dashboard.layout(C.compose("supervised_unet"))
    assert list(layout)[0].startswith("Quality")
    first_chart = next(iter(layout[list(layout)[0]].values()))
    assert first_chart == ["Multiline", ["^val_compare/si_sdr_denoised$", "^val_compare/si_sdr_noisy_input$"]]
    losses = layout["Losses (epoch means)"]
    assert losses["mrstft: train vs validation"] == [
        "Multiline",
        ["^train/loss_mrstft$", "^val/loss_mrstft$"],
    ]
    assert "l1: train vs validation" not in losses, "a term of weight 0 is not computed, so not charted"
    assert list(layout)[-1] == "Status"


def test_the_epoch_line_says_gain_per_content_retention_and_the_alarm():
    metrics = {
        "val/si_sdr": 9.12,
        "val/si_sdr_input": 4.8,
        "val/si_sdr_i": 4.32,
        "val/si_sdr_i/music": 4.0,
        "val/si_sdr_i/speech": 4.61,
        "val/amplitude_retention": 0.62,
        "val/amplitude_retention/music": 0.31,
        "val/amplitude_retention/speech": 0.98,
        "val/pesq": float("nan"),
        "val_status/muting_alarm": 1.0,
        "val_status/muting_alarm/music": 1.0,
        "val_status/muting_alarm/speech": 0.0,
    }
    line = summary_line(metrics, epoch=2, max_epochs=8, contents=("music", "speech"))
    assert line == (
        "epoch 3 of 8 · SI-SDR 9.12 dB (input 4.80, gain +4.32) · music +4.00 · speech +4.61 · "
        "retention 0.62 (music 0.31, speech 0.98) · MUTING (music)"
    )


def test_known_third_party_noise_is_silenced_and_real_warnings_are_not(caplog):
    console.quiet_third_party()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        console.quiet_third_party()  # after simplefilter: our filters must still come first
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("the loss is NaN", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["the loss is NaN"]
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger=rank_zero.name):
        rank_zero.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        rank_zero.info("GPU available: False, used: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]


def test_the_tensorboard_hint_is_a_command_that_exists(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    assert console.tensorboard_hint(repo / "runs") == "make tensorboard"
    assert (
        console.tensorboard_hint(tmp_path / "elsewhere") == f"make tensorboard RUNS={tmp_path / 'elsewhere'}"
    )
    monkeypatch.chdir(tmp_path)  # not a checkout: the environment's own TensorBoard, by its full path
    command, flag, root = console.tensorboard_hint(tmp_path / "runs").rsplit(" ", 2)
    assert flag == "--logdir" and Path(root) == Path("runs")
    assert os.access(command, os.X_OK), f"{command} is not an executable"


def test_the_tracks_of_one_example_share_one_colour_scale():
    rng = np.random.default_rng(0)
    loud, quiet = 0.5 * rng.standard_normal(16000), 0.001 * rng.standard_normal(16000)
    fig, scales = spectrograms.figure(
        [{"noisy": loud, "denoised": quiet, "clean": quiet}, {"other": quiet}], 16000
    )
    first, second = scales
    assert set(first["clim"].values()) == {(first["vmin"], first["vmax"])}
    assert first["vmax"] - first["vmin"] == spectrograms.RANGE_DB
    assert second["vmax"] < first["vmax"] - 30, "each example (row) has its own scale"
    image = spectrograms.rgb(fig)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and image.std() > 10
