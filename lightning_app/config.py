"""Compose the run configuration: defaults <- building blocks <- experiment <- command line.

Strict everywhere: a key that configs/defaults.yaml does not define is an error that names
the key, where it came from, and the closest known keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "configs"
EXPERIMENT_DIR = PROJECT_ROOT / "experiments"


class ConfigError(ValueError):
    """A configuration mistake, worded for the person who made it."""


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


def _merge(base: DictConfig, overlay, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, overlay)
    except ConfigKeyError as exc:
        key = exc.full_key or str(exc.key)
        raise ConfigError(f"unknown config key '{key}' in {source}.{_suggest(key, _all_keys(base))}") from None
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


def _parse_overrides(overrides: Iterable[str]) -> DictConfig:
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. trainer.max_epochs=3")
    try:
        return OmegaConf.from_dotlist(overrides)
    except Exception as exc:
        raise ConfigError(f"could not parse overrides {overrides}: {exc}") from None


def compose(experiment: str, overrides: Iterable[str] = (), blocks: Iterable[str] = (),
            config_dir: Path = CONFIG_DIR, experiment_dir: Path = EXPERIMENT_DIR) -> DictConfig:
    """The resolved, read-only-structure config of an experiment.

    Order (later wins): configs/defaults.yaml, the experiment's ``use:`` blocks, the
    experiment file, ``blocks`` given at launch (e.g. TRAINER=gpu), command-line overrides.
    """
    cfg = _load_yaml(config_dir / "defaults.yaml", "defaults")
    OmegaConf.set_struct(cfg, True)

    exp_path = experiment_dir / f"{experiment}.yaml"
    if not exp_path.is_file():
        raise ConfigError(f"unknown experiment '{experiment}' (no {exp_path}); "
                          f"available: {', '.join(available_experiments(experiment_dir))}")
    exp_cfg = _load_yaml(exp_path, "experiment")

    exp_blocks = list(exp_cfg.pop("use", []) or [])
    cfg = _apply_blocks(cfg, exp_blocks, config_dir)
    cfg = _merge(cfg, exp_cfg, f"experiment file {exp_path.name}")
    cfg, launch_blocks = _apply_launch(cfg, overrides, blocks, config_dir)
    cfg.experiment = experiment
    cfg.use = [*exp_blocks, *launch_blocks]
    _validate(cfg)
    return cfg


def _apply_blocks(cfg: DictConfig, names: Iterable[str], config_dir: Path) -> DictConfig:
    for name in names:
        cfg = _merge(cfg, load_block(name, config_dir), f"building block configs/{name}.yaml")
    return cfg


def _apply_launch(cfg: DictConfig, overrides: Iterable[str], blocks: Iterable[str],
                  config_dir: Path) -> tuple[DictConfig, list[str]]:
    """Blocks given at launch (TRAINER=..., use=[...]) and then key=value overrides."""
    cli = _parse_overrides(overrides)
    names = [*blocks, *(cli.pop("use", []) or [])]
    cfg = _apply_blocks(cfg, names, config_dir)
    return _merge(cfg, cli, "command-line overrides"), names


def compose_saved(saved: Path, overrides: Iterable[str] = (), blocks: Iterable[str] = (),
                  config_dir: Path = CONFIG_DIR) -> DictConfig:
    """A saved run's config.yaml (as resumed), checked against today's defaults, plus new overrides."""
    cfg = _load_yaml(config_dir / "defaults.yaml", "defaults")
    OmegaConf.set_struct(cfg, True)
    cfg = _merge(cfg, _migrate(_load_yaml(Path(saved), "saved run config")), f"saved config {saved}")
    cfg, _ = _apply_launch(cfg, overrides, blocks, config_dir)
    _validate(cfg)
    return cfg


def _migrate(saved: DictConfig) -> DictConfig:
    """Configs saved before the clean side became a content mixture kept one speech source in
    data.clean.{kind, folder, procedural}: move it to data.clean.speech so those runs still resume."""
    clean = OmegaConf.select(saved, "data.clean")
    if isinstance(clean, DictConfig) and "kind" in clean:
        clean.speech = {k: clean.pop(k) for k in ("kind", "folder", "procedural") if k in clean}
    return saved


def _validate(cfg: DictConfig) -> None:
    """Checks that need more than one key; single values are checked where they are used."""
    for key in ("data.snr_db", "data.gain_db"):
        lo, hi = OmegaConf.select(cfg, key)
        if lo > hi:
            raise ConfigError(f"{key} must be [low, high], got [{lo}, {hi}]")
    mix = OmegaConf.to_container(cfg.data.clean.mix)
    if any(w < 0 for w in mix.values()) or not any(w > 0 for w in mix.values()):
        raise ConfigError(f"data.clean.mix needs weights >= 0 and at least one above 0, got {mix}")
    if len(cfg.model.time_strides) != len(cfg.model.channels) - 1:
        raise ConfigError(f"model.time_strides needs {len(cfg.model.channels) - 1} entries (one per level "
                          f"below the first), got {len(cfg.model.time_strides)}")


def to_container(cfg: DictConfig | ListConfig | dict) -> dict:
    """Plain dicts/lists (what checkpoints store: loadable with torch's weights_only=True)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return cfg


def save(cfg: DictConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))


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
