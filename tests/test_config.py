"""Config composition: defaults <- blocks <- experiment <- command line, strictly."""

import re
import threading

import pytest

from lightning_app import config as C


@pytest.mark.slow
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
    (tmp_path / "bad.yaml").write_text(
        "data:\n  noise:\n    procedural:\n      generators:\n        laser: {weight: 1}\n"
    )
    with pytest.raises(C.ConfigError, match=r"data\.noise\.procedural\.generators\.laser.*bad\.yaml"):
        C.compose("bad", experiment_dir=tmp_path)


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(C.ConfigError, match="supervised_unet"):
        C.compose("no_such_experiment")


def test_blocks_apply_in_order_and_cli_blocks_come_last():
    cfg = C.compose("supervised_unet", ["use=[model/tiny]"], blocks=["trainer/gpu"])
    assert cfg.trainer.precision == "bf16-mixed"
    assert list(cfg.model.spectral_unet.channels) == [4, 8, 8]
    assert list(cfg.use) == ["variant/supervised", "trainer/gpu", "model/tiny"]
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


def test_a_config_being_saved_again_is_never_read_half_written(tmp_path):
    """A resumed multi-node run: rank 0 saves config.yaml again while the other ranks read it. A reader must
    find the old file or the new one, whole (rewritten in place, a reader caught it empty or cut short about
    three times per save, and that rank died on a config with no experiment)."""
    cfg = C.compose("supervised_unet")
    path = tmp_path / "config.yaml"
    C.save(cfg, path)
    whole = path.read_text()  # every save below writes the same text
    incomplete, reads, done = [], [0], threading.Event()

    def read_while_saving():
        while not done.is_set():
            text = path.read_text()
            reads[0] += 1
            if text != whole:
                incomplete.append(len(text))

    reader = threading.Thread(target=read_while_saving)
    reader.start()
    try:
        for _ in range(50):
            C.save(cfg, path)
    finally:
        done.set()
        reader.join()
    assert reads[0] > 50, "the reader hardly ran: the case tests nothing"
    assert not incomplete, f"{len(incomplete)} of {reads[0]} reads found config.yaml incomplete"
    assert C.compose_saved(path).experiment == "supervised_unet"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"], "a partial file was left behind"


def test_a_variant_is_declared_once_in_its_block_and_experiments_only_use_it():
    from omegaconf import OmegaConf

    for path in sorted(C.EXPERIMENT_DIR.glob("*.yaml")):
        raw = OmegaConf.load(path)
        if raw.get("stages"):
            continue
        variants = [b for b in raw.get("use", []) if b.startswith("variant/")]
        assert len(variants) == 1, f"{path.name} must use exactly one variant block, uses {variants}"
        for key in C.VARIANT_KEYS:
            assert OmegaConf.select(raw, key) is None, f"{path.name} sets {key}: the variant block does that"


def test_an_experiment_without_a_variant_is_told_which_block_to_use(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("data:\n  snr_db: [0, 10]\n")
    with pytest.raises(C.ConfigError, match=r"declares no variant .* add `use: \[variant/supervised\]`"):
        C.compose(str(mine))


@pytest.mark.parametrize(
    "experiment,override,message",
    [
        ("supervised_unet", "model.cross_domain.latent_channels=64", "read only by model.kind=cross_domain"),
        (
            "pure_noise2noise",
            "model.spectral_unet.n_fft=1024",
            "it would be ignored; this run's is model.cross_domain.n_fft",
        ),
        ("pure_noise2noise", "system.supervised.snr=0", "read only by system.kind=supervised"),
        ("supervised_unet", "model.n_fft=1024", "this one is model.spectral_unet.n_fft"),
        ("pure_noise2noise", "model.cross_domain_strategy=skip", "this one is model.cross_domain.strategy"),
        ("supervised_unet", "system.loss.snr=0", "system.supervised.<term>"),
    ],
)
def test_a_setting_no_part_of_the_run_reads_is_an_error_not_ignored(experiment, override, message):
    with pytest.raises(C.ConfigError, match=re.escape(message)):
        C.compose(experiment, [override])


def test_blocks_may_size_every_network_and_the_written_check_spares_them():
    cfg = C.compose("pure_noise2noise", blocks=["model/tiny"])
    assert list(cfg.model.cross_domain.channels) == [4, 8, 8] and list(cfg.model.spectral_unet.channels) == [
        4,
        8,
        8,
    ]


def test_a_run_saved_before_the_per_network_blocks_still_resumes(tmp_path):
    from omegaconf import OmegaConf

    for experiment in ("pure_noise2noise", "archive_fullband"):
        added_later = ["model.cross_domain.shared_decoder=false"] if experiment == "pure_noise2noise" else []
        today = C.compose(experiment, added_later)  # an old run has the default of an option added later
        old = C.to_container(today)
        kind = old["model"]["kind"]
        # the old flat block held the cross-domain settings whatever the network
        cross = old["model"]["cross_domain"]
        old["model"] = {
            "kind": kind,
            **old["model"][kind],
            "latent_channels": cross["latent_channels"],
            "cross_domain_strategy": cross["strategy"],
            "inference_decoder": cross["inference_decoder"],
        }
        old["model"].pop("strategy", None)
        old["model"].pop("shared_decoder", None)
        old["system"]["loss"] = old["system"].pop("supervised")
        saved = tmp_path / f"{experiment}.yaml"
        saved.write_text(OmegaConf.to_yaml(OmegaConf.create(old)))
        resumed = C.compose_saved(saved)
        assert resumed.model == today.model and resumed.system == today.system, experiment


def _config_value(section: dict, dotted: str):
    node = section
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def _default(parameter):
    default = parameter.default
    return list(default) if isinstance(default, tuple) else default


def test_every_default_a_library_still_has_equals_configs_defaults_yaml():
    """Constructors that always get their values from the config take them keyword-only and required; the
    libraries that keep defaults for use outside a run (generators, callbacks) must agree with
    defaults.yaml."""
    import dataclasses
    import inspect

    from lightning_app.data import music, noise, recording, speech
    from lightning_app.data.datamodule import DenoiseDataModule
    from lightning_app.nets import NETS
    from lightning_app.training.callbacks import media, quality

    d = C.to_container(C.load_defaults())
    checks = [
        (f"generator {g}", fn, d["data"]["noise"]["procedural"]["generators"][g], {})
        for g, fn in noise.GENERATORS.items()
    ]
    checks += [
        ("NoiseMixture", noise.NoiseMixture.__init__, d["data"]["noise"]["procedural"], {}),
        (
            "WaveformQuality",
            quality.WaveformQuality.__init__,
            d,
            {"silent_clean_rms": "metrics.silent_clean_rms", "sample_rate": "data.sample_rate"},
        ),
        (
            "PerceptualQuality",
            quality.PerceptualQuality.__init__,
            d,
            {
                "every_n_epochs": "metrics.perceptual_every_n_epochs",
                "clips": "metrics.perceptual_clips",
                "workers": "metrics.perceptual_workers",
                "visqol_clips": "metrics.visqol_clips",
            },
        ),
        (
            "OverSuppressionAlarm",
            quality.OverSuppressionAlarm.__init__,
            d,
            {"threshold": "metrics.retention_alarm"},
        ),
        (
            "AudioExamples",
            media.AudioExamples.__init__,
            d,
            {"every_n_epochs": "media.every_n_epochs", "clips": "media.clips"},
        ),
    ]
    compared = 0
    for name, fn, section, names in checks:
        for parameter in inspect.signature(fn).parameters.values():
            if parameter.default is inspect.Parameter.empty or parameter.name == "contents":
                continue  # contents: worked out from data.clean.mix, no key of its own
            value = _config_value(section, names.get(parameter.name, parameter.name))
            assert value is not KeyError, f"{name}({parameter.name}=...) has a default but no config key"
            assert _default(parameter) == value, (
                f"{name}({parameter.name}={parameter.default!r}): defaults.yaml has {value!r}"
            )
            compared += 1
    for name, cls, section in [
        ("SpeechConfig", speech.SpeechConfig, d["data"]["clean"]["speech"]["procedural"]),
        ("MusicConfig", music.MusicConfig, d["data"]["clean"]["music"]["procedural"]),
        ("RecordingConfig", recording.RecordingConfig, d["data"]["clean"]["recording"]),
    ]:
        built = cls()
        for f in dataclasses.fields(cls):
            value = getattr(built, f.name)
            value = list(value) if isinstance(value, tuple) else value
            assert value == section[f.name], (
                f"{name}.{f.name} = {value!r}: defaults.yaml has {section[f.name]!r}"
            )
            compared += 1
    assert compared > 40
    for kind, net in NETS.items():
        params = inspect.signature(net).parameters.values()
        assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params), (
            f"{kind} takes its settings as given"
        )
        assert {p.name for p in params} == set(d["model"][kind]), (
            f"model.{kind} and {net.__name__} must name the same settings"
        )
    datamodule = inspect.signature(DenoiseDataModule).parameters.values()
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in datamodule)
