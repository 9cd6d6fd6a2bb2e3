"""Optuna sweeps: trials are real runs, the table is ranked, an interrupted sweep continues."""

from __future__ import annotations

import csv

import optuna
import pytest

from lightning_app import config as C
from lightning_app.training import sweeps as S


def _args(tmp_path):
    return [
        f"run.root={tmp_path / 'runs'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "use=[data/smoke,model/tiny]",
        "trainer.max_epochs=1",
        "trials=4",
        "sampler=random",
        "pruning=false",
        "overrides=[]",
    ]


def _study(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs' / 'sweeps' / 'supervised_unet-learning_rate' / 'study.db'}"
    return optuna.load_study(study_name="supervised_unet-learning_rate", storage=url)


@pytest.mark.slow
def test_four_trial_sweep_ranks_its_trials_and_a_rerun_redoes_nothing(tmp_path, monkeypatch, capsys):
    real_train = S.train
    calls = []

    def interrupted_on_the_third(cfg, **kw):
        calls.append(cfg.experiment)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops the sweep during trial 2
        return real_train(cfg, **kw)

    monkeypatch.setattr(S, "train", interrupted_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        S.run_sweep("supervised_unet", "learning_rate", _args(tmp_path))
    assert len(_study(tmp_path).get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2

    monkeypatch.setattr(S, "train", real_train)
    rows = S.run_sweep("supervised_unet", "learning_rate", _args(tmp_path))
    trials = _study(tmp_path).get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    values = [r["val/si_sdr_i"] for r in rows if r["state"] == "COMPLETE"]
    assert values == sorted(values, reverse=True), "ranked best first"
    for t in complete:  # every trial is a normal run directory
        run = (
            tmp_path
            / "runs"
            / "sweeps"
            / "supervised_unet-learning_rate"
            / f"trial_{t.number:03d}"
            / "version_0"
        )
        assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "config.yaml").is_file()
        saved = C.OmegaConf.load(run / "config.yaml")
        assert saved.optim.lr == t.params["optim.lr"] and saved.data.batch_size == t.params["data.batch_size"]
    table = list(
        csv.DictReader(open(tmp_path / "runs" / "sweeps" / "supervised_unet-learning_rate" / "trials.csv"))
    )
    assert [int(r["trial"]) for r in table][:4] == [r["trial"] for r in rows][:4]

    count = len(trials)
    S.run_sweep("supervised_unet", "learning_rate", _args(tmp_path))
    assert len(_study(tmp_path).get_trials()) == count, "a finished sweep runs no new trial"
    assert "| trial | state | val/si_sdr_i" in capsys.readouterr().out


def test_bad_sweep_definitions_are_clear_errors(tmp_path):
    with pytest.raises(C.ConfigError, match="no sweep 'nope'"):
        S.run_sweep("supervised_unet", "nope")
    with pytest.raises(C.ConfigError, match="grid sampler needs categorical"):
        S.run_sweep("pure_noise2noise", "loss_weights", ["sampler=grid"])
    with pytest.raises(C.ConfigError, match="DDP would re-run the sweep"):
        S.run_sweep("supervised_unet", "learning_rate", ["trainer.strategy=ddp", f"run.root={tmp_path}"])


@pytest.mark.parametrize(
    "experiment, sweep_name",
    [
        ("supervised_unet", "learning_rate"),
        ("pure_noise2noise", "loss_weights"),
        ("pure_noise2noise", "noise2noise_recipe"),
    ],
)
def test_every_shipped_sweep_samples_values_its_experiment_accepts(experiment, sweep_name):
    sweep = S.load_sweep(sweep_name, [])
    for pick in (0, -1):  # the first and the last choice of every categorical (booleans included)
        fixed = {
            key: (spec.choices[pick] if spec.type == "categorical" else spec.low)
            for key, spec in sweep.params.items()
        }
        overrides = S.suggest(optuna.trial.FixedTrial(fixed), sweep.params)
        cfg = C.compose(experiment, [*sweep.overrides, *overrides])
        for key, value in fixed.items():
            assert C.OmegaConf.select(cfg, key) == value, (
                f"{sweep_name}: {key}={value} did not reach the config"
            )
