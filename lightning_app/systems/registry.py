"""The systems by name (``system.kind``): the one place a kind maps to its LightningModule."""

from __future__ import annotations

from lightning_app.systems.base import DenoiseSystem
from lightning_app.systems.noise2noise import Noise2NoiseSystem
from lightning_app.systems.supervised import SupervisedSystem

SYSTEMS: dict[str, type[DenoiseSystem]] = {
    "supervised": SupervisedSystem,
    "noise2noise": Noise2NoiseSystem,
}


def system_class(kind: str) -> type[DenoiseSystem]:
    if kind not in SYSTEMS:
        raise ValueError(f"system.kind '{kind}' is not one of {sorted(SYSTEMS)}")
    return SYSTEMS[kind]
