"""Plain nn.Module networks and the registry that builds them from the `model:` config."""

from __future__ import annotations

import inspect

from torch import nn

from lightning_app.nets.cross_domain import CrossDomainNet
from lightning_app.nets.unet import SpectralUNet
from lightning_app.nets.wave_unet import WaveUNet

NETS: dict[str, type[nn.Module]] = {
    "spectral_unet": SpectralUNet,
    "cross_domain": CrossDomainNet,
    "wave_unet": WaveUNet,
}


def settings_read_by(kind: str) -> list[str]:
    """The ``model.*`` settings the network of ``kind`` is built from (its constructor's parameters)."""
    return [name for name in inspect.signature(NETS[kind]).parameters]


def build_net(kind: str, **params) -> nn.Module:
    """The network of ``kind`` from its settings (a checkpoint's ``hyper_parameters["model"]`` minus the kind;
    ``compat`` brings those of earlier checkpoints to today's names)."""
    if kind not in NETS:
        raise ValueError(f"model.kind '{kind}' is not one of {sorted(NETS)}")
    return NETS[kind](**params)
