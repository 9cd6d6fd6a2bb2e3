"""What a newcomer reads while a run trains and after it: TensorBoard's HParams table over a folder of
mixed runs, the output-vs-input charts, the smoothing note, one epoch numbering, the progress bar and
model summary, the level alarms, the audio grid and quiet training for notebooks."""

import logging
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import tensorboard
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
from torch.utils.tensorboard import SummaryWriter

from lightning_app import config as C
from lightning_app.training import console, dashboard
from lightning_app.training.callbacks import media
from lightning_app.training.callbacks.console import (
    EpochProgressBar,
    LayerSummary,
    final_lines,
    result_line,
    summary_line,
)
from lightning_app.training.callbacks.quality import OverSuppressionAlarm, WaveformQuality
from lightning_app.training.run import train
from tests.helpers import Recorder, smoke_config


# ----------------------------------------------------------------------------- HParams
def _hparams_view(logdir: Path):
    """(experiment, session groups) as TensorBoard's HParams tab gets them for ``logdir``."""
    from tensorboard import context

    mux = pem.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = base_plugin.TBContext(
        logdir=str(logdir), multiplexer=mux, data_provider=data_provider.MultiplexerDataProvider(mux, logdir)
    )
    backend, request = backend_context.Context(tb), context.RequestContext()
    experiment = backend.experiment_from_metadata(
        request,
        "",
        True,
        backend.hparams_metadata(request, ""),
        backend.hparams_from_data_provider(request, "", limit=None),
    )
    groups = list_session_groups.Handler(
        request,
        backend,
        "",
        api_pb2.ListSessionGroupsRequest(
            col_params=[api_pb2.ColParams(hparam=h.name) for h in experiment.hparam_infos]
            + [api_pb2.ColParams(metric=m.name) for m in experiment.metric_infos],
            start_index=0,
            slice_size=100,
            allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_UNKNOWN],
        ),
    ).run()
    return experiment, {g.name: g for g in groups.session_groups}


def _write_run(run_dir: Path, cfg) -> None:
    writer = SummaryWriter(str(run_dir))
    dashboard.write(writer, cfg)
    writer.add_scalar("val/si_sdr_i", 4.321, 12)
    writer.close()


@pytest.mark.parametrize("first", ["supervised_unet", "pure_noise2noise"])
def test_a_folder_of_mixed_runs_offers_every_variants_columns(tmp_path, first):
    """TensorBoard takes a folder's columns from ONE run's experiment summary: whichever it reads first
    must declare the other variant's columns too."""
    other = {"supervised_unet": "pure_noise2noise", "pure_noise2noise": "supervised_unet"}[first]
    _write_run(tmp_path / "runs" / "a_first" / "version_0", C.compose(first))
    _write_run(tmp_path / "runs" / "b_second" / "version_0", C.compose(other))
    experiment, groups = _hparams_view(tmp_path / "runs")
    columns = {h.name for h in experiment.hparam_infos}
    for prefix in (
        "model.cross_domain.",
        "system.noise2noise.",
        "model.spectral_unet.",
        "system.supervised.",
    ):
        assert [c for c in columns if c.startswith(prefix)], f"no {prefix}* column when {first} is read first"
    assert sorted(h.name for h in experiment.hparam_infos)[:5] == [
        "Budget",
        "Data",
        "Experiment",
        "Loss",
        "Variant",
    ]
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:4] == ["val/si_sdr_i", "val/si_sdr", "val_status/si_sdr_best", "val/amplitude_retention"]
    assert {"val/leakage", "val/pesq", "val/visqol/music"} <= set(metrics)
    assert experiment.metric_infos[0].display_name == "SI-SDR gain dB"
    # each run fills its own variant's columns and leaves the other's empty (blank, never a broken filter)
    n2n = groups[f"{'a_first' if first == 'pure_noise2noise' else 'b_second'}/version_0"].hparams
    sup = groups[f"{'a_first' if first == 'supervised_unet' else 'b_second'}/version_0"].hparams
    assert "model.cross_domain.latent_channels" in n2n and "model.cross_domain.latent_channels" not in sup
    assert "system.supervised.snr" in sup and "system.supervised.snr" not in n2n


def test_the_summary_columns_open_on_what_tells_runs_apart_in_few_characters():
    for experiment in C.available_experiments():
        cfg = C.compose(experiment)
        if cfg.stages:
            continue
        shown = dashboard.summary(cfg)
        assert len(shown["Variant"]) <= 20 and len(shown["Budget"]) <= 24, shown
    supervised = dashboard.summary(C.compose("supervised_unet", ["trainer.max_epochs=3"]))
    assert supervised["Budget"] == "3 ep × 1024 ex, bs 16"
    assert supervised["Variant"] == "sup. spectral U-Net"
    assert supervised["Loss"].startswith("1·snr"), "the heaviest term first"
    assert supervised["Data"] == "16 kHz speech, 2 to 20 dB"
    assert dashboard.summary(C.compose("archive_fullband"))["Data"].startswith("44.1 kHz music 0.65+speech")


# ----------------------------------------------------------------------------- custom scalars, smoothing
def _fake_trainer(**metrics):
    return SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        sanity_checking=False,
        current_epoch=2,
        max_epochs=3,
        callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
    )


def test_every_output_vs_input_chart_draws_series_named_denoised_and_noisy_input():
    """A custom-scalars chart has no legend: the tag names are what its Matches list and tooltip show."""
    layout = dashboard.layout(C.compose("archive_fullband"))
    charts = {t: c for category in layout.values() for t, c in category.items() if " vs noisy input" in t}
    assert len(charts) == 5
    for title, (_, tags) in charts.items():
        denoised, noisy = tags
        assert denoised.startswith("^val_compare/") and denoised.endswith("_denoised$"), title
        assert noisy == denoised.replace("_denoised$", "_noisy_input$"), title
    # ... and WaveformQuality logs them, next to the usual names
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.standard_normal((2, 1, 8000)).astype(np.float32))
    noisy = clean + 0.3 * torch.randn_like(clean)
    callback, module = WaveformQuality(), Recorder()
    batch = {"noisy": noisy, "clean": clean}
    callback.on_validation_batch_end(None, module, {"estimate": 0.5 * (noisy + clean)}, batch, 0)
    callback.on_validation_epoch_end(_fake_trainer(), module)
    assert module.logged["val_compare/si_sdr_denoised"] == module.logged["val/si_sdr"]
    assert module.logged["val_compare/si_sdr_noisy_input"] == module.logged["val/si_sdr_input"]
    assert module.logged["val_compare/lsd_noisy_input"] == module.logged["val/lsd_input"]


def test_the_smoothing_note_gives_addresses_this_tensorboard_reads():
    """TensorBoard's 0.6 default is in its front end (no event file sets it); its address can override it.
    The parameter names must be the ones the installed front end reads."""
    bundle = Path(tensorboard.__file__).with_name("webfiles.zip")
    with zipfile.ZipFile(bundle) as archive:
        script = archive.read("index.js").decode("utf-8", errors="replace")
    assert "scalarSmoothing:.6" in script and '"_smoothingWeight",{defaultValue:.6}' in script
    assert '="smoothing"' in script, "Time Series' ?smoothing= address parameter"
    urls = console.unsmoothed_urls()
    assert urls["Time Series"] == "http://localhost:6006/?smoothing=0#timeseries"
    assert urls["Custom Scalars"] == "http://localhost:6006/#custom_scalars&_smoothingWeight=0"
    note = " ".join(console.smoothing_note())
    assert "set Smoothing to 0" in note and all(u in note for u in urls.values())


# ----------------------------------------------------------------------------- the terminal
def test_the_level_alarms_say_muting_and_louder_in_the_line_and_the_warning():
    loud = {"val/amplitude_retention": 3.85, "val_status/muting_alarm": 0.0, "val/si_sdr": 5.0}
    assert summary_line(loud, epoch=2, max_epochs=3).endswith(
        "retention 3.85 · LOUDER than the reference (x3.85)"
    )
    fine = {**loud, "val/amplitude_retention": 1.02}
    assert summary_line(fine, epoch=2, max_epochs=3).endswith("no muting")
    per_content = {
        **fine,
        "val/amplitude_retention/music": 2.1,
        "val/amplitude_retention/speech": 0.95,
    }
    assert "LOUDER than the reference (music x2.10)" in summary_line(per_content, 0, 1, ("music", "speech"))
    harmed = {**fine, "val/si_sdr_i": 4.0, "val/worse_than_input": 0.0417}
    assert "· 4% of clips worse than input ·" in summary_line(harmed, 0, 1)

    alarm = OverSuppressionAlarm(threshold=0.5)
    louder = r"LOUDER than the reference: amplitude retention 3\.85 > 1\.25 after epoch 3 of 3 "
    louder += r"\(target 0\.9-1\.1\)"
    with pytest.warns(UserWarning, match=louder):
        alarm.on_validation_epoch_end(_fake_trainer(**{"val/amplitude_retention": 3.85}), Recorder())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alarm.on_validation_epoch_end(_fake_trainer(**{"val/amplitude_retention": 1.0}), Recorder())
    with pytest.warns(UserWarning, match=r"OVER-SUPPRESSION.* after epoch 3 of 3"):
        alarm.on_validation_epoch_end(_fake_trainer(**{"val/amplitude_retention": 0.1}), Recorder())


def test_the_final_summary_words_removed_vs_clean_and_shows_leakage_for_noise2noise():
    metrics = {
        "val/si_sdr": 9.123,
        "val/si_sdr_input": 4.8,
        "val/si_sdr_i": 4.323,
        "val_status/si_sdr_best": 9.2,
        "val/amplitude_retention": 3.85,
        "val/speech_removed": 0.8812,
        "val/leakage": 0.01234,
        "val/residual_noise": 0.35,
        "val/cross_si_sdr_i": 3.1,
        "val_status/muting_alarm": 0.0,
        "val/worse_than_input": 0.125,
        "val/si_sdr_i/music": 3.0,
        "val/worse_than_input/music": 0.25,
    }
    text = "\n".join(final_lines(metrics))
    assert "clips worse than input (SI-SDR more than 0.5 dB below it): 12%" in text
    assert "music: SI-SDR gain +3.00 dB" in text and "clips worse than input 25%" in text
    assert "gain +4.32 dB; best 9.20 dB" in text
    assert "removed-vs-clean corr 0.881 (|correlation| of what was removed with the clean signal" in text
    assert "speech removed" not in text
    assert "Noise2Noise: leakage 0.012 (near 0 is right)   residual noise 0.350" in text
    assert "LOUDER than the reference (x3.85)" in text
    assert "leakage" not in "\n".join(final_lines({k: v for k, v in metrics.items() if "leak" not in k}))
    line = result_line(metrics)
    assert line.startswith("SI-SDR gain +4.32 dB (output 9.12 dB), retention 3.85")
    assert line.endswith("leakage 0.012, LOUDER than the reference (x3.85)")


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_progress_bar_counts_epochs_from_one_without_v_num_and_the_summary_has_no_flops(tmp_path, capsys):
    seen = []

    class Descriptions(EpochProgressBar):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append((self.train_progress_bar.desc, dict(self.get_metrics(trainer, pl_module))))
            super().on_train_epoch_end(trainer, pl_module)

    summaries = []
    handler = logging.Handler()
    handler.emit = lambda record: summaries.append(record.getMessage())
    logging.getLogger("lightning.pytorch.callbacks.model_summary").addHandler(handler)
    try:
        L.Trainer(
            max_epochs=2,
            logger=TensorBoardLogger(tmp_path, name="x", version="version_0"),
            callbacks=[Descriptions(), LayerSummary()],
            enable_checkpointing=False,
            accelerator="cpu",
        ).fit(_Tiny())
    finally:
        logging.getLogger("lightning.pytorch.callbacks.model_summary").removeHandler(handler)
    assert [desc.strip(": ") for desc, _ in seen] == ["epoch 1 of 2", "epoch 2 of 2"]
    assert all("v_num" not in shown and "loss" in shown for _, shown in seen)
    summary = "\n".join(summaries)
    assert "Total params" in summary and "FLOP" not in summary.upper()


def _media_trainer(logger, epoch: int, step: int) -> SimpleNamespace:
    """What the media callback reads of a Trainer: rank 0, past the sanity check, epoch `epoch` of 3."""
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        current_epoch=epoch,
        max_epochs=3,
        global_step=step,
        loggers=[logger],
    )


def test_the_audio_grid_gives_each_run_its_own_section(tmp_path):
    """TensorBoard's Audio and Images dashboards make a section of each tag's part before the first "/" and
    sort its cards by tag, then run: each run's clip must be a section of its own, not interleaved."""
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(0.1 * rng.standard_normal((1, 1, 4000)).astype(np.float32))
    batch = {
        "noisy": clean + 0.01,
        "clean": clean,
        "index": torch.tensor([0]),
        "content": ["speech"],
        "snr_db": torch.tensor([4.3]),
    }
    tags = {}
    for run in ("supervised_unet", "pure_noise2noise"):
        logger = TensorBoardLogger(tmp_path, name=run, version="version_0")
        trainer = _media_trainer(logger, epoch=0, step=4)
        media.AudioExamples(16000, clips=1).on_validation_batch_end(
            trainer, SimpleNamespace(), {"estimate": clean}, batch, 0
        )
        logger.experiment.flush()
        acc = EventAccumulator(logger.log_dir, size_guidance={"audio": 0, "images": 0})
        acc.Reload()
        tags[run] = acc.Tags()
    sections = {
        run: {t.split("/", 1)[0] for t in [*found["audio"], *found["images"]]} for run, found in tags.items()
    }
    assert sections["supervised_unet"] == {"clip_0 · speech · input SNR 4.3 dB · supervised_unet version_0"}
    assert not sections["supervised_unet"] & sections["pure_noise2noise"], "no section holds two runs"
    assert sorted(t.split("/", 1)[1] for t in tags["supervised_unet"]["audio"]) == [
        "1 noisy",
        "2 denoised",
        "3 clean",
    ]


def test_the_spectrogram_title_counts_epochs_from_one(tmp_path, monkeypatch):
    titles = []
    original = media.spectrograms.figure
    monkeypatch.setattr(
        media.spectrograms,
        "figure",
        lambda *a, **k: titles.append(k["title"]) or original(*a, **k),
    )
    logger = TensorBoardLogger(tmp_path, name="run", version="version_0")
    trainer = _media_trainer(logger, epoch=2, step=12)
    clean = torch.zeros(1, 1, 4000) + 0.1
    batch = {"noisy": clean, "clean": clean, "index": torch.tensor([0])}
    media.AudioExamples(16000, clips=1).on_validation_batch_end(
        trainer, SimpleNamespace(), {"estimate": clean}, batch, 0
    )
    assert titles == ["clip_0 · run version_0   (epoch 3 of 3, step 12)"]


# ----------------------------------------------------------------------------- whole runs
@pytest.mark.slow
def test_quiet_training_prints_one_line_and_nothing_else(tmp_path, capfd):
    cfg = smoke_config(tmp_path, "trainer.max_epochs=1", "trainer.enable_progress_bar=true")
    result = train(cfg, quiet=True)
    out, err = capfd.readouterr()
    assert err == "", err
    assert out.count("\n") == 1, out
    assert out.startswith("supervised_unet version_0: SI-SDR gain ") and "retention" in out
    assert out.rstrip().endswith(result["run_dir"]) or "held back: quiet=True" in out
    again = train(cfg, resume="latest", quiet=True)  # a finished run: still one line
    out, err = capfd.readouterr()
    assert again["metrics"] == result["metrics"] and out.count("\n") == 1 and err == ""


@pytest.mark.slow
def test_a_run_writes_its_exact_final_values_and_counts_epochs_from_one(trained_run, capsys):
    run_dir = Path(trained_run["run_dir"])
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    (event,) = acc.Tensors("results/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert text.startswith("Final values after epoch 1 of 1 (exact")
    assert f"gain {trained_run['metrics']['val/si_sdr_i']:+.2f} dB" in text
    assert [e.value for e in acc.Scalars("epoch")][-1] == 1, "TensorBoard's epoch scalar counts from 1"
