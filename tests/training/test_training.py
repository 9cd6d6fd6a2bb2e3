"""End-to-end tiny runs through the real entry point: files, TensorBoard content, resume, alarm."""

import json
import re
from pathlib import Path

import lightning as L
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_app import train as train_mod
from lightning_app.training import run as training_run
from lightning_app.training.callbacks.quality import STATUS
from lightning_app.training.run import train
from tests.helpers import smoke_config


def _events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "audio": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_run_writes_config_events_checkpoints_and_every_quality_metric(trained_run):
    run_dir = Path(trained_run["run_dir"])
    assert run_dir.name == "version_0" and run_dir.parent.name == "supervised_unet"
    assert (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]

    tags = _events(run_dir).Tags()
    for name in (
        "si_sdr",
        "si_sdr_input",
        "si_sdr_i",
        "snr_i",
        "pesq",
        "pesq_i",
        "stoi",
        "stoi_i",
        "amplitude_retention",
        "speech_removed",
        "spectral_correlation",
        "loss",
        "loss_mrstft",
    ):
        assert f"val/{name}" in tags["scalars"], name
    # training terms under validation's names (one chart each in the layout), steps apart
    assert {"train/loss", "train/loss_mrstft", "train_step/loss", "train_step/loss_snr"} <= set(
        tags["scalars"]
    )
    assert not [t for t in tags["scalars"] if t.endswith(("_step", "_epoch"))], (
        "Lightning's suffixes are gone"
    )
    # bookkeeping apart from quality, so val/ holds what a listener hears
    assert {"val_status/muting_alarm", "val_status/clips", "val_status/si_sdr_best"} <= set(tags["scalars"])
    assert not {t for t in tags["scalars"] if t.startswith("val/") and t.split("/")[1] in STATUS}
    # every example of every run: one group named by its content, noise, input SNR and run; players noisy ->
    # denoised -> clean
    groups = {t.rsplit("/", 1)[0] for t in tags["audio"]}
    assert any(
        re.fullmatch(r"clip_0 · speech · [a-z_+]+ · input SNR -?\d+\.\d dB · supervised_unet version_0", g)
        for g in groups
    ), groups
    group = sorted(groups)[0]
    assert sorted(t for t in tags["audio"] if t.startswith(group + "/")) == [
        f"{group}/1 noisy",
        f"{group}/2 denoised",
        f"{group}/3 clean",
    ]
    assert f"{group}/spectrograms" in tags["images"]
    assert "_hparams_/session_start_info" in _events(run_dir).PluginTagToContent("hparams")
    assert "custom_scalars__config__" in tags["tensors"] or _events(run_dir).PluginTagToContent(
        "custom_scalars"
    )

    metrics = trained_run["metrics"]
    assert metrics["val/si_sdr_i"] == pytest.approx(
        metrics["val/si_sdr"] - metrics["val/si_sdr_input"], abs=1e-6
    )
    assert metrics["val_status/clips"] == 4 and metrics["val_status/silent_clips"] == 0


@pytest.mark.slow
def test_checkpoint_loads_with_weights_only(trained_run):
    ckpt = torch.load(trained_run["best"], weights_only=True, map_location="cpu")
    assert ckpt["system_kind"] == "supervised"
    assert isinstance(ckpt["hyper_parameters"]["model"], dict)


class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


@pytest.mark.slow
def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path, monkeypatch):
    args = ("trainer.max_epochs=2", "optim.scheduler=onecycle")
    straight = train(smoke_config(tmp_path / "a", *args))

    original = training_run.build_callbacks
    monkeypatch.setattr(
        training_run, "build_callbacks", lambda cfg, d: original(cfg, d) + [_StopAfterFirstEpoch()]
    )
    interrupted = train(smoke_config(tmp_path / "b", *args))
    monkeypatch.setattr(training_run, "build_callbacks", original)
    half = torch.load(interrupted["last"], weights_only=True)
    assert half["epoch"] == 0

    resumed = train(smoke_config(tmp_path / "b", *args), resume="latest")
    assert resumed["run_dir"] == interrupted["run_dir"], "resume must reuse the run directory"
    a = torch.load(straight["last"], weights_only=True)
    b = torch.load(resumed["last"], weights_only=True)
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"] == 1
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(tensor, b["state_dict"][name], rtol=0, atol=1e-6, msg=name)
    opt_a, opt_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    for k in opt_a:
        torch.testing.assert_close(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"], rtol=0, atol=1e-6)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    # One TensorBoard run directory, continued, and still exactly best + last checkpoints.
    run_dir = Path(resumed["run_dir"])
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


class _KeepFirstEpochCheckpoint(L.Callback):
    """Copies last.ckpt aside when the second epoch starts: the checkpoint a run killed in that epoch resumes
    from."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            last.with_name("first_epoch.ckpt").write_bytes(last.read_bytes())


@pytest.mark.slow
def test_a_resumed_run_shows_each_step_once_in_tensorboard(tmp_path, monkeypatch):
    args = ("trainer.max_epochs=2", "trainer.log_every_n_steps=1")
    straight = _events(Path(train(smoke_config(tmp_path / "straight", *args))["run_dir"]))
    original = training_run.build_callbacks
    monkeypatch.setattr(
        training_run, "build_callbacks", lambda cfg, d: original(cfg, d) + [_KeepFirstEpochCheckpoint()]
    )
    run_dir = Path(train(smoke_config(tmp_path / "resumed", *args))["run_dir"])
    monkeypatch.setattr(training_run, "build_callbacks", original)
    # As if the run had been killed late in its second epoch: its events hold that epoch, its checkpoint does
    # not.
    (run_dir / "checkpoints" / "first_epoch.ckpt").replace(run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "metrics.json").unlink()
    train(smoke_config(tmp_path / "resumed", *args), resume="latest")
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2, "the resume writes its own event file"
    resumed = _events(run_dir)
    assert resumed.Tags()["scalars"] == straight.Tags()["scalars"]
    for tag in straight.Tags()["scalars"]:
        steps = [e.step for e in resumed.Scalars(tag)]
        assert steps == [e.step for e in straight.Scalars(tag)], (
            f"{tag}: steps as TensorBoard shows them: {steps}"
        )


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys):
    cfg = smoke_config(tmp_path, "trainer.max_epochs=1")
    first = train(cfg)
    run_dir = Path(first["run_dir"])
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert json.loads((run_dir / "metrics.json").read_text())["metrics"]["val/si_sdr"]
    again = train(smoke_config(tmp_path, "trainer.max_epochs=1"), resume="latest")
    assert "already finished" in capsys.readouterr().out
    assert again["metrics"] == first["metrics"]
    after = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before, "no file of a finished run may change when it is resumed"


@pytest.mark.slow
def test_last_checkpoint_is_written_every_epoch_even_without_a_new_best(tmp_path):
    # lr 0: the score never improves after the first epoch, so best.ckpt stays at epoch 0 and
    # last.ckpt must still follow every epoch (what a preempted job resumes from).
    cfg = smoke_config(tmp_path, "trainer.max_epochs=3", "optim.lr=0.0", "optim.scheduler=constant")
    result = train(cfg)
    steps = 3 * cfg.data.train_examples_per_epoch // cfg.data.batch_size
    last = torch.load(result["last"], weights_only=True)
    best = torch.load(result["best"], weights_only=True)
    assert (last["epoch"], last["global_step"]) == (2, steps)
    assert best["global_step"] < steps


def test_resume_without_a_run_says_what_to_do(tmp_path):
    from lightning_app.config import ConfigError

    with pytest.raises(ConfigError, match="nothing to resume.*make train EXP=supervised_unet"):
        train(smoke_config(tmp_path), resume="latest")


@pytest.mark.slow
def test_a_muting_model_raises_the_over_suppression_alarm(tmp_path, capsys):
    cfg = smoke_config(tmp_path, "trainer.max_epochs=1", "model.spectral_unet.mask_max=0.05", "optim.lr=1e-7")
    with pytest.warns(UserWarning, match="OVER-SUPPRESSION"):
        result = train(cfg)
    assert result["metrics"]["val/amplitude_retention"] < 0.1
    assert result["metrics"]["val_status/muting_alarm"] == 1.0
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch 1 of 1 · SI-SDR")]
    assert len(epoch_lines) == 1 and "MUTING (speech)" in epoch_lines[0], out
    assert "MUTING ALARM" in out and "TensorBoard: make tensorboard RUNS=" in out


@pytest.mark.slow
def test_train_cli_rejects_unknown_keys_before_doing_anything(tmp_path, capsys):
    code = train_mod.main(["supervised_unet", "trainer.max_epoch=3", f"run.root={tmp_path}"])
    assert code == 2
    assert "unknown config key 'trainer.max_epoch'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_resuming_with_a_longer_one_cycle_schedule_is_refused_clearly(tmp_path, capsys):
    args = [
        "supervised_unet",
        f"run.root={tmp_path}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "use=[data/smoke,model/tiny]",
        "trainer.max_epochs=1",
    ]
    assert train_mod.main(args) == 0
    assert train_mod.main([*args[:-1], "trainer.max_epochs=3", "--resume"]) == 2
    assert "cannot resume with a different trainer.max_epochs" in capsys.readouterr().err
