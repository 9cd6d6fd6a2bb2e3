"""A 1-D U-Net on the raw waveform with an unbounded linear output: the research's kind of model.

Unlike the spectral U-Net, whose bounded mask multiplies the input (it can only attenuate what is
there, and starts near a pass-through), this network writes its output sample by sample from a
linear head that starts near silence. Nothing stops it from muting, which is what a waveform MAE
drives it to under noise: the first lesson, reproducible with ``system.supervised.l1=1``.

Encoder: a full-rate stem, then per level a strided convolution (decimation by its stride) and a
same-length convolution; dilated residual convolutions at the bottleneck; the decoder mirrors it with
transposed convolutions and the encoder's skip features. Any input length works: it is zero-padded
to ``valid_length`` and trimmed back.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


def _conv(c_in: int, c_out: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """Same-length convolution, normalised, GELU."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel // 2), dilation=dilation),
        _norm(c_out),
        nn.GELU(),
    )


class WaveUNet(nn.Module):
    def __init__(self, *, channels, strides, kernel_size: int, context_dilations):
        super().__init__()
        channels, strides = list(channels), list(strides)
        if len(strides) != len(channels) - 1:
            raise ValueError(
                f"model.wave_unet.strides needs {len(channels) - 1} entries (one per level below the "
                f"first), got {len(strides)}"
            )
        if kernel_size % 2 == 0 or any(s < 2 or s % 2 for s in strides):
            raise ValueError("model.wave_unet: kernel_size must be odd and every stride an even number >= 2")
        self.total_stride = math.prod(strides)
        self.stem = _conv(1, channels[0], kernel_size)
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(channels[i], channels[i + 1], 2 * s, stride=s, padding=s // 2),
                _norm(channels[i + 1]),
                nn.GELU(),
                _conv(channels[i + 1], channels[i + 1], kernel_size),
            )
            for i, s in enumerate(strides)
        )
        self.context = nn.ModuleList(
            _conv(channels[-1], channels[-1], 3, dilation=d) for d in context_dilations
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(channels[i + 1], channels[i], 2 * s, stride=s, padding=s // 2)
            for i, s in reversed(list(enumerate(strides)))
        )
        self.fuse = nn.ModuleList(
            _conv(2 * channels[i], channels[i], kernel_size) for i in reversed(range(len(strides)))
        )
        self.head = nn.Conv1d(
            channels[0], 1, 1
        )  # linear and unbounded: the output may be anything, silence too

    def valid_length(self, num_samples: int) -> int:
        """Smallest length >= num_samples that every level decimates without remainder, leaving the
        bottleneck at least two samples (a normalisation needs more than one value)."""
        return max(-(-num_samples // self.total_stride), 2) * self.total_stride

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.shape[-1]
        x = F.pad(wave.reshape(-1, 1, n).float(), (0, self.valid_length(n) - n))
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for layer in self.context:
            y = y + layer(y)
        for up, fuse in zip(self.ups, self.fuse, strict=True):
            y = fuse(torch.cat([F.gelu(up(y)), skips.pop()], dim=1))
        return self.head(y)[..., :n].reshape(wave.shape).to(wave.dtype)
