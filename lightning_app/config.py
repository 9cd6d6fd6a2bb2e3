"""Compose the run configuration: defaults <- building blocks <- experiment <- command line.

Strict everywhere: a key that configs/defaults.yaml does not define is an error that names
the key, where it came from, and the closest known keys.

Where the suite's own files are (configs/, experiments/ and models/, the bundled archive model): in a
checkout (and an editable install) they sit next to the package. An installed wheel carries copies inside
the package (``lightning_app/_data/``, put there by setup.py's build step), so ``pip install .`` works from
any folder. A folder of your own comes first: ``C2C_HOME`` (a folder holding any of configs/, experiments/,
models/), else the working directory, where a ``configs/defaults.yaml`` or an ``experiments/`` folder marks
a project of yours. Each folder is looked up on its own, so a project may hold only experiments/ and still
use the suite's configs.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from lightning_app import compat
from lightning_app.data import audio_io

# ----------------------------------------------------------------------------- where the files are
PACKAGE = Path(__file__).resolve().parent
SOURCE_TREE = PACKAGE.parent
PACKAGED = PACKAGE / "_data"
#: what marks each folder as the real one (an empty folder of that name is not)
MARKERS = {"configs": "defaults.yaml", "experiments": "*.yaml", "models": "*.ckpt"}


def candidates(name: str) -> list[Path]:
    """The places ``name`` (configs, experiments, models) is looked for, first wins."""
    places = [Path(os.environ["C2C_HOME"]) / name] if os.environ.get("C2C_HOME") else []
    return [*places, Path.cwd() / name, SOURCE_TREE / name, PACKAGED / name]


def folder(name: str) -> Path:
    """The first of ``candidates(name)`` that holds what marks it; the source tree's if none does (so an
    error names the place a checkout would have)."""
    for place in candidates(name):
        if place.is_dir() and any(place.glob(MARKERS[name])):
            return place
    return SOURCE_TREE / name


PROJECT_ROOT = SOURCE_TREE
CONFIG_DIR = folder("configs")
EXPERIMENT_DIR = folder("experiments")


class ConfigError(ValueError):
    """A configuration mistake, worded for the person who made it."""


def load_defaults(config_dir: Path = CONFIG_DIR) -> DictConfig:
    """configs/defaults.yaml: every key and its default."""
    return _load_yaml(config_dir / "defaults.yaml", "defaults")


def available_experiments(experiment_dir: Path = EXPERIMENT_DIR) -> list[str]:
    return sorted(p.stem for p in experiment_dir.glob("*.yaml"))


def _all_keys(cfg, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            path = f"{prefix}{k}"
            keys.append(path)
            keys += _all_keys(cfg._get_node(k), path + ".")
    return keys


def _suggest(bad_key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(bad_key, known, n=3, cutoff=0.6)
    if not close:
        leaf = bad_key.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:3]
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _moved(key: str, base: DictConfig) -> str | None:
    """Today's name of a key from before each network and system had its own block: model.n_fft is
    model.<kind>.n_fft, system.loss.snr is system.supervised.snr."""
    parts = key.split(".")
    if len(parts) == 2 and parts[0] == "model":
        kinds = [k for k in CHOICES["model.kind"] if k in base.model and parts[1] in base.model[k]]
        kind = base.model.kind if not OmegaConf.is_missing(base.model, "kind") else None
        if kinds:
            return (
                f"model.{kind if kind in kinds else kinds[0]}."
                f"{compat.FLAT_MODEL_KEYS.get(parts[1], parts[1])}"
            )
        if parts[1] in compat.FLAT_MODEL_KEYS and "cross_domain" in base.model:
            return f"model.cross_domain.{compat.FLAT_MODEL_KEYS[parts[1]]}"
    if parts[:2] == ["system", "loss"]:
        return f"system.supervised.{parts[2] if len(parts) > 2 else '<term>'} (the supervised loss weights)"
    return None


def _merge(base: DictConfig, overlay, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, overlay)
    except ConfigKeyError as exc:
        key = exc.full_key or str(exc.key)
        if moved := _moved(key, base):
            raise ConfigError(
                f"unknown config key '{key}' in {source}: each network's and each system's settings are "
                f"under its name now; this one is {moved}"
            ) from None
        raise ConfigError(
            f"unknown config key '{key}' in {source}.{_suggest(key, _all_keys(base))}"
        ) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid value in {source}: {exc.msg if hasattr(exc, 'msg') else exc}") from None


def _load_yaml(path: Path, what: str) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return cfg


def load_block(name: str, config_dir: Path = CONFIG_DIR) -> DictConfig:
    """A building block by its 'group/name', e.g. 'trainer/gpu' -> configs/trainer/gpu.yaml."""
    path = config_dir / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(str(p.relative_to(config_dir).with_suffix("")) for p in config_dir.glob("*/*.yaml"))
        raise ConfigError(f"no building block '{name}' ({path}); available: {', '.join(choices)}")
    return _load_yaml(path, "building block")


def foreign_form(argv: list[str]) -> str | None:
    """One line answering the forms people bring from LightningCLI and Hydra, with the form that works
    here."""
    for i, arg in enumerate(argv):
        option = arg.split("=", 1)[0]
        if arg.startswith("--") and "." in option:
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "VALUE")
            return (
                f"{arg}: LightningCLI's form; here overrides are key=value without dashes: "
                f"{option[2:]}={value}"
            )
        if option in ("--config", "-c"):
            return (
                f"{arg}: LightningCLI's form; give the experiment (a name from experiments/ or a YAML file) "
                f"as the first argument: python -m lightning_app.train my_experiment.yaml"
            )
        if arg.startswith("+") and "=" in arg:
            return (
                f"{arg}: Hydra's form; every key already exists in configs/defaults.yaml, so no '+': "
                f"{arg.lstrip('+')}"
            )
        if arg.startswith("~"):
            return (
                f"{arg}: Hydra's deletion; keys cannot be removed here, set a value instead: "
                f"{arg[1:].split('=')[0]}=..."
            )
        if arg in ("-m", "--multirun"):
            return (
                f"{arg}: Hydra's multirun; sweeps here are Optuna studies: make sweep EXP=<experiment> "
                f"SWEEP=<a file of configs/sweep/> (python -m lightning_app.sweep EXPERIMENT SWEEP)"
            )
        if option.startswith(("hydra.", "hydra/")):
            return (
                f"{arg}: Hydra's own settings do not exist here; "
                "runs go to run.root (runs/<experiment>/version_N)"
            )
    return None


def experiment_file(experiment: str, experiment_dir: Path = EXPERIMENT_DIR) -> tuple[str, Path]:
    """(name, path) of an experiment given by name (experiments/NAME.yaml) or as a YAML file of its own."""
    given = Path(experiment)
    if given.suffix in (".yaml", ".yml"):
        if not given.is_file():
            raise ConfigError(f"experiment file not found: {given}")
        return given.stem, given
    path = experiment_dir / f"{experiment}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"unknown experiment '{experiment}' (no {path}); "
            f"available: {', '.join(available_experiments(experiment_dir))}, or a YAML file of your own"
        )
    return experiment, path


def _parse_overrides(overrides: Iterable[str]) -> DictConfig:
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            hint = (
                f"; to continue that run: --resume-from {item}"
                if item.endswith(".ckpt") or (Path(item) / "checkpoints").is_dir()
                else ""
            )
            raise ConfigError(f"override '{item}' must look like key=value, e.g. trainer.max_epochs=3{hint}")
    try:
        return OmegaConf.from_dotlist(overrides)
    except Exception as exc:
        raise ConfigError(f"could not parse overrides {overrides}: {exc}") from None


def compose(
    experiment: str,
    overrides: Iterable[str] = (),
    blocks: Iterable[str] = (),
    config_dir: Path = CONFIG_DIR,
    experiment_dir: Path = EXPERIMENT_DIR,
) -> DictConfig:
    """The resolved, read-only-structure config of an experiment.

    Order (later wins): configs/defaults.yaml, the experiment's ``use:`` blocks, the
    experiment file, ``blocks`` given at launch (e.g. TRAINER=gpu), command-line overrides.
    """
    cfg = _load_yaml(config_dir / "defaults.yaml", "defaults")
    OmegaConf.set_struct(cfg, True)

    experiment, exp_path = experiment_file(experiment, experiment_dir)
    exp_cfg = _load_yaml(exp_path, "experiment")

    exp_blocks = list(exp_cfg.pop("use", []) or [])
    cfg = _apply_blocks(cfg, exp_blocks, config_dir)
    cfg = _merge(cfg, exp_cfg, f"experiment file {exp_path.name}")
    cfg, launch_blocks, cli = _apply_launch(cfg, overrides, blocks, config_dir)
    cfg.experiment = experiment
    cfg.use = [*exp_blocks, *launch_blocks]
    _validate(cfg, _load_yaml(config_dir / "defaults.yaml", "defaults"))
    if not cfg.stages:
        check_written_keys(cfg, _dotted_keys(exp_cfg), f"experiment file {exp_path.name}")
        check_written_keys(cfg, _dotted_keys(cli), "command-line overrides")
    return cfg


def _apply_blocks(cfg: DictConfig, names: Iterable[str], config_dir: Path) -> DictConfig:
    for name in names:
        cfg = _merge(cfg, load_block(name, config_dir), f"building block configs/{name}.yaml")
    return cfg


def _apply_launch(
    cfg: DictConfig, overrides: Iterable[str], blocks: Iterable[str], config_dir: Path
) -> tuple[DictConfig, list[str], DictConfig]:
    """Blocks given at launch (TRAINER=..., use=[...]) and then key=value overrides; also returns those."""
    cli = _parse_overrides(overrides)
    names = [*blocks, *(cli.pop("use", []) or [])]
    cfg = _apply_blocks(cfg, names, config_dir)
    return _merge(cfg, cli, "command-line overrides"), names, cli


def compose_saved(
    saved: Path, overrides: Iterable[str] = (), blocks: Iterable[str] = (), config_dir: Path = CONFIG_DIR
) -> DictConfig:
    """A saved run's config.yaml (as resumed), checked against today's defaults, plus new overrides."""
    cfg = _load_yaml(config_dir / "defaults.yaml", "defaults")
    OmegaConf.set_struct(cfg, True)
    try:
        upgraded = compat.upgrade_config(_load_yaml(Path(saved), "saved run config"), f"{saved}")
    except compat.NewerSchemaError as exc:
        raise ConfigError(str(exc)) from None
    cfg = _merge(cfg, upgraded, f"saved config {saved}")
    cfg, _, cli = _apply_launch(cfg, overrides, blocks, config_dir)
    _validate(cfg, _load_yaml(config_dir / "defaults.yaml", "defaults"))
    check_written_keys(cfg, _dotted_keys(cli), "command-line overrides")
    return cfg


# ----------------------------------------------------------------------------- validation
# Types come from the defaults (a key holds what its default holds; a float also takes a whole
# number). The tables below add only what a default cannot say. Everything is checked when the
# config is composed, so a mistake stops the run before any directory is made.

#: keys that take more than their default's type
FLEXIBLE = {
    "trainer.devices": (int, str, list),
    "trainer.precision": (str, int),
    "run.version": (str, int),
    "system.init_from": (str,),
    "data.noise.folder.label": (str,),
}
#: keys with a fixed set of values (system/model kinds: tests keep these equal to the registries)
CHOICES = {
    "data.mode": ("supervised", "noise2noise", "paired", "real_pairs"),
    "system.kind": ("supervised", "noise2noise"),
    "model.kind": ("spectral_unet", "cross_domain", "wave_unet"),
    "model.cross_domain.strategy": ("no_skip", "skip", "source_skip"),
    "model.cross_domain.inference_decoder": ("a", "b", "mean"),
    "optim.scheduler": ("onecycle", "cosine", "constant"),
    "data.clean.speech.kind": ("procedural", "folder"),
    "data.clean.music.kind": ("procedural", "folder"),
    "data.noise.kind": ("procedural", "folder"),
    "checkpoint.mode": ("min", "max"),
    "trainer.accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
    "trainer.precision": (
        "64-true",
        "32-true",
        "16-mixed",
        "bf16-mixed",
        "16-true",
        "bf16-true",
        "64",
        "32",
        "16",
        "bf16",
        64,
        32,
        16,
    ),
}
#: above zero (each element, for lists)
POSITIVE = (
    "data.sample_rate",
    "data.segment_seconds",
    "data.val_segment_seconds",
    "data.batch_size",
    "data.train_examples_per_epoch",
    "data.val_clips",
    "model.*.n_fft",
    "model.*.hop",
    "model.*.freq_patch",
    "model.*.channels",
    "model.*.time_strides",
    "model.*.context_dilations",
    "model.*.mask_max",
    "model.*.compress",
    "model.*.latent_channels",
    "model.*.strides",
    "model.*.kernel_size",
    "trainer.max_epochs",
    "trainer.num_nodes",
    "trainer.log_every_n_steps",
    "trainer.check_val_every_n_epoch",
    "metrics.perceptual_every_n_epochs",
    "media.every_n_epochs",
    "data.noise.procedural.max_layers",
)
#: zero or more
NON_NEGATIVE = (
    "seed",
    "data.num_workers",
    "data.source_bank",
    "optim.lr",
    "optim.weight_decay",
    "optim.grad_clip",
    "system.supervised.*",
    "system.noise2noise.*",
    "metrics.silent_clean_rms",
    "metrics.perceptual_clips",
    "metrics.perceptual_workers",
    "metrics.visqol_clips",
    "media.clips",
    "data.clean.mix.*",
    "*weights.*",
    "*.generators.*.weight",
    "data.real_pairs.max_lag_seconds",
    "data.real_pairs.window_seconds",
    "data.real_pairs.max_drift_ms",
)
#: between 0 and 1
FRACTIONS = ("*_probability", "*_fraction", "metrics.retention_alarm", "data.real_pairs.min_correlation")

_TYPE_WORDS = {
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}
_PLURAL = {int: "whole numbers", float: "numbers"}


def _kind(value) -> type | None:
    for t in (bool, int, float, str, list, dict):  # bool before int: True is an int in Python
        if isinstance(value, t):
            return t
    return None


def _fits(value, expected: type) -> bool:
    got = _kind(value)
    return got is expected or (expected is float and got is int)


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _check_value(key: str, value, default) -> None:
    shown = repr(value) if isinstance(value, str) else value
    if value is None and default is None:
        return  # an optional setting left unset
    allowed = FLEXIBLE.get(key) or ((_kind(default),) if default is not None else None)
    is_range = (
        isinstance(default, list) and len(default) == 2 and all(_kind(d) in (int, float) for d in default)
    )
    if allowed and not any(_fits(value, t) for t in allowed):
        if is_range:
            raise ConfigError(f"{key} must be [low, high] ({_PLURAL[_kind(default[0])]}), got {shown}")
        raise ConfigError(f"{key} must be {' or '.join(_TYPE_WORDS[t] for t in allowed)}, got {shown}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}={value} is not one of: {', '.join(str(c) for c in CHOICES[key])}")
    if is_range:  # every two-number default is a [low, high] range drawn from
        if len(value) != 2 or not all(_fits(v, _kind(default[0])) for v in value):
            raise ConfigError(f"{key} must be [low, high] ({_PLURAL[_kind(default[0])]}), got {shown}")
        if value[0] > value[1]:
            raise ConfigError(f"{key} must be [low, high], got [{value[0]}, {value[1]}]")
    elif isinstance(default, list) and default and _kind(default[0]) in (int, float):
        bad = [v for v in value if not _fits(v, _kind(default[0]))]
        if bad:
            raise ConfigError(f"{key} must be a list of {_PLURAL[_kind(default[0])]}, got {shown}")
    numbers = [v for v in (value if isinstance(value, list) else [value]) if _kind(v) in (int, float)]
    if _matches(key, POSITIVE) and any(v <= 0 for v in numbers):
        raise ConfigError(f"{key} must be above 0, got {shown}")
    if _matches(key, NON_NEGATIVE) and any(v < 0 for v in numbers):
        raise ConfigError(f"{key} must be 0 or more, got {shown}")
    if _matches(key, FRACTIONS) and any(not 0 <= v <= 1 for v in numbers):
        raise ConfigError(f"{key} must be between 0 and 1, got {shown}")


def _check_against(defaults, cfg, prefix: str = "") -> None:
    for key in defaults.keys():
        path = f"{prefix}{key}"
        if OmegaConf.is_missing(defaults, key) and OmegaConf.is_missing(cfg, key):
            continue
        if OmegaConf.is_missing(cfg, key):
            continue  # a required path left to give; train says which ones its data setup needs
        default, value = defaults._get_node(key), cfg._get_node(key)
        if isinstance(default, DictConfig):
            if not isinstance(value, DictConfig):
                raise ConfigError(f"{path} is a group of settings ({', '.join(default.keys())}), not a value")
            _check_against(default, value, path + ".")
            continue
        plain = lambda node: (
            OmegaConf.to_container(node) if isinstance(node, (DictConfig, ListConfig)) else node._value()
        )
        default_value = None if OmegaConf.is_missing(defaults, key) else plain(default)
        _check_value(path, plain(value), default_value)


#: the variant a run is (data.mode, model.kind, system.kind): set by one block of configs/variant/
VARIANT_KEYS = ("data.mode", "model.kind", "system.kind")


def check_variant(cfg: DictConfig) -> None:
    """A variant is declared, and its system, network and data fit together."""
    missing = [
        k
        for k in VARIANT_KEYS
        if OmegaConf.is_missing(OmegaConf.select(cfg, k.rsplit(".", 1)[0]), k.rsplit(".", 1)[1])
    ]
    if missing:
        variants = ", ".join(f"variant/{p.stem}" for p in sorted((CONFIG_DIR / "variant").glob("*.yaml")))
        raise ConfigError(
            f"experiment {cfg.experiment} declares no variant ({', '.join(missing)} unset): add "
            f"`use: [variant/supervised]` (or another of: {variants}) to its file"
        )
    kind, net, mode = cfg.system.kind, cfg.model.kind, cfg.data.mode
    noise2noise_hint = (
        "start from a Noise2Noise experiment (pure_noise2noise, extreme_denoising, progressive)"
    )
    if kind == "noise2noise" and net != "cross_domain":
        raise ConfigError(
            f"system.kind=noise2noise needs model.kind=cross_domain (got {net}); {noise2noise_hint}"
        )
    if kind == "noise2noise" and mode not in ("noise2noise", "real_pairs"):
        raise ConfigError(
            f"system.kind=noise2noise learns from two noisy copies: data.mode must be noise2noise or "
            f"real_pairs (got {mode}); for clean targets use system.kind=supervised (e.g. supervised_unet)"
        )
    if kind == "supervised" and mode not in ("supervised", "paired"):
        raise ConfigError(
            f"system.kind=supervised needs clean targets: data.mode must be supervised or paired "
            f"(got {mode}); to train without clean audio {noise2noise_hint}"
        )


def check_written_keys(cfg: DictConfig, written: Iterable[str], source: str) -> None:
    """A key written for a network or system the run does not use would be ignored: that is an error.

    ``written`` are the dotted keys an experiment file or the command line set (building blocks may set
    every network's values, as model/tiny does, so they are not checked)."""
    for key in written:
        parts = key.split(".")
        if len(parts) < 3 or parts[0] not in ("model", "system"):
            continue
        group, owner = parts[0], parts[1]
        kinds, used = (
            (CHOICES["model.kind"], cfg.model.kind)
            if group == "model"
            else (CHOICES["system.kind"], cfg.system.kind)
        )
        if owner in kinds and owner != used:
            same = f"{group}.{used}.{'.'.join(parts[2:])}"
            instead = (
                f"; this run's is {same}" if OmegaConf.select(cfg, same, default=None) is not None else ""
            )
            raise ConfigError(
                f"{key} (in {source}) is read only by {group}.kind={owner}, and this run's "
                f"{group}.kind is {used}: it would be ignored{instead}"
            )


def _dotted_keys(cfg, prefix: str = "") -> list[str]:
    if not isinstance(cfg, DictConfig):
        return [prefix.rstrip(".")] if prefix else []
    keys = []
    for k in cfg.keys():
        keys += _dotted_keys(cfg._get_node(k), f"{prefix}{k}.")
    return keys


def _validate(cfg: DictConfig, defaults: DictConfig) -> None:
    """Every value against its default's type and the tables above, then combinations of keys."""
    _check_against(defaults, cfg)
    if cfg.stages:
        return  # a sequence of experiments: each stage is composed and checked on its own
    mix = OmegaConf.to_container(cfg.data.clean.mix)
    if not any(w > 0 for w in mix.values()):
        raise ConfigError(f"data.clean.mix needs at least one weight above 0, got {mix}")
    check_variant(cfg)
    net = cfg.model[cfg.model.kind]
    strides = "time_strides" if "time_strides" in net else "strides"
    if "channels" in net and strides in net and len(net[strides]) != len(net.channels) - 1:
        raise ConfigError(
            f"model.{cfg.model.kind}.{strides} needs {len(net.channels) - 1} entries (one per level "
            f"below the first), got {len(net[strides])}"
        )


def to_container(cfg: DictConfig | ListConfig | dict) -> dict:
    """Plain dicts/lists (what checkpoints store: loadable with torch's weights_only=True)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return cfg


def check_folder(path: str | Path, key: str) -> None:
    """A folder a run makes or writes into (``key`` names the setting): it, or its nearest existing parent,
    must be a folder this process may write in; checked before anything is made."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: the folder {existing} is not writable")


def save(cfg: DictConfig, path: Path) -> None:
    """A run's config.yaml, stamped with the schema it is written in (``compat``). It is written whole under a
    name of its own and then renamed over the old one: when a multi-node run resumes, rank 0 rewrites it while
    the other ranks read it, and a reader of a file being rewritten in place can find it empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with audio_io.atomic_text(path) as f:
        f.write(OmegaConf.to_yaml(compat.stamp_config(cfg), resolve=True))


def flatten(d: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become strings (TensorBoard's HParams needs scalars)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = str(list(v))
        else:
            out[key] = v
    return out
