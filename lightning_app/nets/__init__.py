"""Plain nn.Module networks and the registry that builds them from the `model:` config."""

from __future__ import annotations

from torch import nn

from lightning_app.nets.unet import SpectralUNet

NETS: dict[str, type[nn.Module]] = {
    "spectral_unet": SpectralUNet,
}


def build_net(kind: str, **params) -> nn.Module:
    if kind not in NETS:
        raise ValueError(f"model.kind '{kind}' is not one of {sorted(NETS)}")
    return NETS[kind](**params)
