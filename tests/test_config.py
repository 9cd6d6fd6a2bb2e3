"""Config composition: defaults <- blocks <- experiment <- command line, strictly."""

import pytest

from lightning_app import config as C


def test_every_experiment_composes_and_keeps_defaults():
    for name in C.available_experiments():
        cfg = C.compose(name)
        assert cfg.experiment == name
        assert cfg.data.sample_rate > 0 and cfg.seed is not None


def test_command_line_overrides_win_and_parse_lists():
    cfg = C.compose("supervised_unet", ["trainer.max_epochs=3", "data.snr_db=[10,25]"])
    assert cfg.trainer.max_epochs == 3
    assert list(cfg.data.snr_db) == [10, 25]


def test_unknown_key_fails_with_the_key_and_a_suggestion():
    with pytest.raises(C.ConfigError) as err:
        C.compose("supervised_unet", ["trainer.max_epoch=3"])
    message = str(err.value)
    assert "trainer.max_epoch" in message and "command-line" in message
    assert "trainer.max_epochs" in message  # the suggestion


def test_unknown_nested_key_in_experiment_file_names_the_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("data:\n  noise:\n    procedural:\n      generators:\n        laser: {weight: 1}\n")
    with pytest.raises(C.ConfigError, match=r"data\.noise\.procedural\.generators\.laser.*bad\.yaml"):
        C.compose("bad", experiment_dir=tmp_path)


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(C.ConfigError, match="supervised_unet"):
        C.compose("no_such_experiment")


def test_blocks_apply_in_order_and_cli_blocks_come_last():
    cfg = C.compose("supervised_unet", ["use=[model/tiny]"], blocks=["trainer/gpu"])
    assert cfg.trainer.precision == "bf16-mixed"
    assert list(cfg.model.channels) == [4, 8, 8]
    assert list(cfg.use) == ["trainer/gpu", "model/tiny"]
    with pytest.raises(C.ConfigError, match="no building block 'trainer/tpu'"):
        C.compose("supervised_unet", blocks=["trainer/tpu"])


def test_malformed_override_and_inverted_range_are_explained():
    with pytest.raises(C.ConfigError, match="key=value"):
        C.compose("supervised_unet", ["trainer.max_epochs"])
    with pytest.raises(C.ConfigError, match=r"data\.snr_db must be \[low, high\]"):
        C.compose("supervised_unet", ["data.snr_db=[20,2]"])


def test_required_paths_are_missing_not_someones_disk():
    cfg = C.compose("supervised_unet")
    assert C.OmegaConf.is_missing(cfg.data.clean.speech.folder, "path")
    assert C.OmegaConf.is_missing(cfg.data.clean.music.folder, "path")
    assert C.OmegaConf.is_missing(cfg.data.paired, "train_noisy")


def test_saved_config_round_trips_with_new_overrides(tmp_path):
    cfg = C.compose("supervised_unet", ["trainer.max_epochs=7"])
    C.save(cfg, tmp_path / "config.yaml")
    again = C.compose_saved(tmp_path / "config.yaml", ["trainer.max_epochs=9"])
    assert again.trainer.max_epochs == 9
    assert again.model == cfg.model
