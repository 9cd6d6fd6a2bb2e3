"""The one place that keeps runs and checkpoints of earlier versions loading.

Every config.yaml a run writes and every checkpoint it saves carries the schema version it was written in
(``schema`` at the top of config.yaml, ``c2c_schema`` in a checkpoint); files written before versions
existed read as schema 1. Reading brings a file up to ``SCHEMA`` one step at a time; each step is one
function below, with a test. A file from a newer schema than this code knows is refused with one line.

Schemas:
  1. model settings flat under ``model.*``; one speech source in ``data.clean.{kind, folder, procedural}``;
     the supervised loss weights under ``system.loss``; the cross-domain network's ``cross_domain_strategy``
     and no ``shared_decoder``; the cosine schedule saved as torch's CosineAnnealingLR state (``T_max``).
  2. each network's settings in its own block (``model.<kind>.*``); the clean side a mixture of contents
     (``data.clean.speech``, ``data.clean.music``, ...); ``system.supervised``; the cosine a LambdaLR plan.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

SCHEMA = 2
CONFIG_KEY = "schema"
CHECKPOINT_KEY = "c2c_schema"


class NewerSchemaError(ValueError):
    """A file written by a newer version of the suite than this one."""


def _checked(version: int, what: str) -> int:
    if version > SCHEMA:
        raise NewerSchemaError(
            f"{what} was written in schema {version} by a newer c2c-denoise; this one reads "
            f"schemas up to {SCHEMA}: update the package (pip install -U c2c-denoise)"
        )
    return version


# ----------------------------------------------------------------------------- run configs (config.yaml)
#: schema 1's flat model settings and their names in the network's own block
FLAT_MODEL_KEYS = {
    "n_fft": "n_fft",
    "hop": "hop",
    "channels": "channels",
    "time_strides": "time_strides",
    "context_dilations": "context_dilations",
    "mask_max": "mask_max",
    "compress": "compress",
    "freq_patch": "freq_patch",
    "latent_channels": "latent_channels",
    "cross_domain_strategy": "strategy",
    "inference_decoder": "inference_decoder",
}
CROSS_DOMAIN_ONLY = ("latent_channels", "strategy", "inference_decoder")
#: settings added in schema 2, with the value that reproduces what schema 1 networks were trained with
ADDED_MODEL_SETTINGS = {"cross_domain": {"shared_decoder": False}}


def _config_1_to_2(saved: DictConfig) -> None:
    clean = OmegaConf.select(saved, "data.clean")
    if isinstance(clean, DictConfig) and "kind" in clean:
        clean.speech = {k: clean.pop(k) for k in ("kind", "folder", "procedural") if k in clean}
    model = OmegaConf.select(saved, "model")
    if isinstance(model, DictConfig) and any(k in model for k in FLAT_MODEL_KEYS):
        kind = model.get("kind", "spectral_unet")
        flat = {FLAT_MODEL_KEYS[k]: model.pop(k) for k in list(model.keys()) if k in FLAT_MODEL_KEYS}
        if kind != "cross_domain":
            flat = {k: v for k, v in flat.items() if k not in CROSS_DOMAIN_ONLY}
        model[kind] = {**ADDED_MODEL_SETTINGS.get(kind, {}), **flat}
    system = OmegaConf.select(saved, "system")
    if isinstance(system, DictConfig) and "loss" in system:
        system.supervised = system.pop("loss")


CONFIG_STEPS = {1: _config_1_to_2}


def upgrade_config(saved: DictConfig, what: str = "saved config") -> DictConfig:
    """A saved run config in today's shape, its schema key removed (``saved`` is changed in place)."""
    version = _checked(int(saved.pop(CONFIG_KEY, 1)), what)
    for step in range(version, SCHEMA):
        CONFIG_STEPS[step](saved)
    return saved


def stamp_config(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` that says which schema it is written in (for config.yaml)."""
    stamped = OmegaConf.create({CONFIG_KEY: SCHEMA})
    return OmegaConf.merge(stamped, OmegaConf.to_container(cfg, resolve=True))


# ----------------------------------------------------------------------------- checkpoints
#: schema 1's names of network settings, by today's
EARLIER_MODEL_NAMES = {"cross_domain_strategy": "strategy"}


def checkpoint_schema(checkpoint: dict, what: str = "checkpoint") -> int:
    return _checked(int(checkpoint.get(CHECKPOINT_KEY, 1)), what)


def upgrade_model_settings(kind: str, params: dict, schema: int, known: list[str]) -> dict:
    """A checkpoint's network settings (``hyper_parameters["model"]`` minus the kind) in today's names.

    Schema 1 kept one flat block of every network's settings: those the network of ``kind`` does not
    read (``known``: its constructor's parameters) are dropped.
    """
    if schema >= 2:
        return dict(params)
    renamed = {
        **ADDED_MODEL_SETTINGS.get(kind, {}),
        **{EARLIER_MODEL_NAMES.get(k, k): v for k, v in params.items()},
    }
    return {k: v for k, v in renamed.items() if k in known}


def upgrade_scheduler_states(checkpoint: dict) -> None:
    """Schema 1's CosineAnnealingLR state continues as the same cosine in today's LambdaLR plan."""
    for state in checkpoint.get("lr_schedulers", []):
        if "T_max" in state and "lr_lambdas" not in state:
            state["lr_lambdas"] = [{"start": 0, "start_factor": 1.0, "end": state["T_max"]}]


def stamp_checkpoint(checkpoint: dict) -> None:
    checkpoint[CHECKPOINT_KEY] = SCHEMA
