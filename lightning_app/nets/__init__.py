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


#: settings checkpoints of earlier versions carry for every network (one flat model.* block), by today's names
_EARLIER_NAMES = {"cross_domain_strategy": "strategy"}
#: settings added since, with the value that reproduces what earlier checkpoints were trained with
_ADDED = {"cross_domain": {"shared_decoder": False}}


def settings_read_by(kind: str) -> list[str]:
    """The ``model.*`` settings the network of ``kind`` is built from (its constructor's parameters)."""
    return [name for name in inspect.signature(NETS[kind]).parameters]


def build_net(kind: str, **params) -> nn.Module:
    """The network of ``kind`` from its settings (a checkpoint's ``hyper_parameters["model"]`` minus the kind);
    settings of earlier checkpoints that this network does not read are dropped."""
    if kind not in NETS:
        raise ValueError(f"model.kind '{kind}' is not one of {sorted(NETS)}")
    params = {**_ADDED.get(kind, {}), **{_EARLIER_NAMES.get(k, k): v for k, v in params.items()}}
    read = set(settings_read_by(kind))
    return NETS[kind](**{k: v for k, v in params.items() if k in read})
