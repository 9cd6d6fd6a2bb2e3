"""Runs and checkpoints of earlier schemas still load: one test per migration, and the stamps that key
them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lightning_app import compat
from lightning_app import config as C
from lightning_app.nets import build_net, settings_read_by
from lightning_app.systems.checkpoints import CheckpointError, load_model, read_checkpoint
from tests.helpers import smoke_config


def _saved(tmp_path, cfg, edit) -> str:
    """``cfg`` written as config.yaml, then changed by ``edit`` (a dict -> None) into an older layout."""
    data = OmegaConf.to_container(cfg, resolve=True)
    edit(data)
    path = tmp_path / "config.yaml"
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(data)))
    return str(path)


def test_config_yaml_carries_its_schema_and_reads_back_unchanged(tmp_path):
    cfg = smoke_config(tmp_path)
    C.save(cfg, tmp_path / "config.yaml")
    assert OmegaConf.load(tmp_path / "config.yaml")[compat.CONFIG_KEY] == compat.SCHEMA
    assert C.compose_saved(tmp_path / "config.yaml") == cfg


def test_schema_1_flat_model_settings_move_to_the_networks_block(tmp_path):
    cfg = smoke_config(tmp_path)
    kind = cfg.model.kind

    def flatten_model(data):
        data["model"] = {"kind": kind, **data["model"][kind]}

    upgraded = C.compose_saved(_saved(tmp_path, cfg, flatten_model))
    assert upgraded.model[kind] == cfg.model[kind]


def test_schema_1_cross_domain_strategy_is_renamed_and_its_decoders_stay_apart(tmp_path):
    cfg = smoke_config(tmp_path, "model.cross_domain.shared_decoder=true", experiment="pure_noise2noise")
    settings = C.to_container(cfg.model.cross_domain)

    def flatten_model(data):
        flat = {("cross_domain_strategy" if k == "strategy" else k): v for k, v in settings.items()}
        del flat["shared_decoder"]  # schema 1 networks always had two decoders
        data["model"] = {"kind": "cross_domain", **flat}

    upgraded = C.compose_saved(_saved(tmp_path, cfg, flatten_model))
    assert C.to_container(upgraded.model.cross_domain) == {**settings, "shared_decoder": False}


def test_schema_1_single_speech_source_moves_into_the_content_mixture(tmp_path):
    cfg = smoke_config(tmp_path)
    speech = C.to_container(cfg.data.clean.speech)

    def single_source(data):
        del data["data"]["clean"]["speech"]
        data["data"]["clean"].update(speech)

    upgraded = C.compose_saved(_saved(tmp_path, cfg, single_source))
    assert C.to_container(upgraded.data.clean.speech) == speech


def test_schema_1_supervised_loss_weights_move_to_system_supervised(tmp_path):
    cfg = smoke_config(tmp_path, "system.supervised.l1=0.25")

    def old_loss_block(data):
        data["system"]["loss"] = data["system"].pop("supervised")

    upgraded = C.compose_saved(_saved(tmp_path, cfg, old_loss_block))
    assert upgraded.system.supervised.l1 == 0.25


def test_a_config_from_a_newer_schema_is_one_clear_error(tmp_path):
    cfg = smoke_config(tmp_path)
    path = _saved(tmp_path, cfg, lambda data: data.update({compat.CONFIG_KEY: compat.SCHEMA + 1}))
    with pytest.raises(C.ConfigError, match=f"{path}.*schema {compat.SCHEMA + 1}.*newer"):
        C.compose_saved(path)


def _checkpoint(tmp_path, model: dict, weights: dict, **extra) -> str:
    path = tmp_path / "model.ckpt"
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in weights.items()},
            "system_kind": "noise2noise",
            "hyper_parameters": {"model": model, "loss": {}, "optim": {}, "sample_rate": 16000},
            **extra,
        },
        path,
    )
    return str(path)


def _tiny_cross_domain(tmp_path, **changes) -> dict:
    return {
        **C.to_container(smoke_config(tmp_path, experiment="pure_noise2noise").model.cross_domain),
        **changes,
    }


def test_schema_1_checkpoint_settings_are_renamed_completed_and_trimmed(tmp_path):
    today = _tiny_cross_domain(tmp_path, shared_decoder=False)
    weights = build_net("cross_domain", **today).state_dict()
    flat = {
        ("cross_domain_strategy" if k == "strategy" else k): v
        for k, v in today.items()
        if k != "shared_decoder"
    }
    flat["kernel_size"] = 15  # another network's setting, kept in schema 1's one flat block
    model = load_model(_checkpoint(tmp_path, {"kind": "cross_domain", **flat}, weights))
    read = read_checkpoint(tmp_path / "model.ckpt")["hyper_parameters"]["model"]
    assert {k: v for k, v in read.items() if k != "kind"} == today
    assert set(read) - {"kind"} <= set(settings_read_by("cross_domain"))
    assert model.sample_rate == 16000


def test_schema_2_checkpoint_settings_are_taken_as_they_are(tmp_path):
    today = _tiny_cross_domain(tmp_path)
    weights = build_net("cross_domain", **today).state_dict()
    path = _checkpoint(tmp_path, {"kind": "cross_domain", **today}, weights, **{compat.CHECKPOINT_KEY: 2})
    assert read_checkpoint(path)["hyper_parameters"]["model"] == {"kind": "cross_domain", **today}
    assert compat.upgrade_model_settings(
        "cross_domain", {"cross_domain_strategy": "skip"}, 2, ["strategy"]
    ) == {"cross_domain_strategy": "skip"}, "schema 2 is never renamed"


def test_a_checkpoint_from_a_newer_schema_is_one_clear_error(tmp_path):
    today = _tiny_cross_domain(tmp_path)
    path = _checkpoint(
        tmp_path, {"kind": "cross_domain", **today}, {}, **{compat.CHECKPOINT_KEY: compat.SCHEMA + 1}
    )
    with pytest.raises(CheckpointError, match="newer"):
        read_checkpoint(path)


def test_schema_1_cosine_annealing_state_continues_as_the_same_cosine():
    checkpoint = {"lr_schedulers": [{"T_max": 120, "last_epoch": 30}, {"lr_lambdas": [{"end": 5}]}]}
    compat.upgrade_scheduler_states(checkpoint)
    assert checkpoint["lr_schedulers"][0]["lr_lambdas"] == [{"start": 0, "start_factor": 1.0, "end": 120}]
    assert checkpoint["lr_schedulers"][1]["lr_lambdas"] == [{"end": 5}], "today's plan is left alone"


@pytest.mark.slow
def test_training_stamps_checkpoints_and_config(trained_run):
    best = torch.load(trained_run["best"], map_location="cpu", weights_only=True)
    assert best[compat.CHECKPOINT_KEY] == compat.SCHEMA
    run_config = OmegaConf.load(Path(trained_run["run_dir"]) / "config.yaml")
    assert run_config[compat.CONFIG_KEY] == compat.SCHEMA
