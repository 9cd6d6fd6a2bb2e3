"""Plain nn.Module networks and the registry that builds them from the `model:` config."""

from __future__ import annotations

import inspect

from torch import nn

from lightning_app.nets.cross_domain import CrossDomainNet
from lightning_app.nets.unet import SpectralUNet

NETS: dict[str, type[nn.Module]] = {
    "spectral_unet": SpectralUNet,
    "cross_domain": CrossDomainNet,
}


CROSS_DOMAIN_ONLY = ("latent_channels", "cross_domain_strategy", "inference_decoder")


def settings_read_by(kind: str) -> list[str]:
    """The ``model.*`` settings the network of ``kind`` is built from (its constructor's parameters)."""
    return [name for name in inspect.signature(NETS[kind]).parameters]


def build_net(kind: str, **params) -> nn.Module:
    if kind not in NETS:
        raise ValueError(f"model.kind '{kind}' is not one of {sorted(NETS)}")
    if kind != "cross_domain":
        params = {k: v for k, v in params.items() if k not in CROSS_DOMAIN_ONLY}
    return NETS[kind](**params)
