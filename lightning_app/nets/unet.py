"""2D U-Net over the spectrogram that predicts a bounded complex mask.

Waveform in, waveform out: the STFT front end is part of the module, so training,
evaluation and restoration all call ``forward(wave)`` with any length.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lightning_app.nets.stft import STFT


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: batch size 1 at restoration time behaves like training.
    return nn.GroupNorm(min(8, channels), channels)


class ConvBlock(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride=(1, 1)):
        kernel = tuple(3 if s == 1 else 4 for s in stride)
        padding = tuple(1 for _ in stride)
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding), _norm(c_out), nn.GELU()
        )


class UpBlock(nn.Module):
    """Up-sample, concatenate the skip features (zeros when there are none), fuse."""

    def __init__(self, c_in: int, c_skip: int, c_out: int, stride):
        super().__init__()
        kernel = tuple(4 if s == 2 else 3 for s in stride)
        self.c_skip = c_skip
        self.up = nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=1)
        self.fuse = ConvBlock(c_out + c_skip, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.gelu(self.up(x))
        if skip is None:
            # The same weights serve a no-skip path: it sees constant zeros, never any input detail.
            skip = x.new_zeros(x.shape[0], self.c_skip, *x.shape[2:])
        return self.fuse(torch.cat([x, skip], dim=1))


class TemporalContext(nn.Module):
    """Residual dilated convolutions along time at the bottleneck: long context, cheaply."""

    def __init__(self, channels: int, dilations=(1, 2, 4, 8)):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, (1, 3), padding=(0, d), dilation=(1, d)),
                _norm(channels),
                nn.GELU(),
            )
            for d in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


class PatchStem(nn.Sequential):
    """Groups of ``patch`` neighbouring frequency bins -> one feature vector (a learned band split).

    At 44.1 kHz a 2048-point STFT has 1024 bins; convolutions at that resolution cost most of the
    network's time while the detail they add is available to the mask head anyway (it maps each
    patch back to its bins)."""

    def __init__(self, c_in: int, c_out: int, patch: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, (patch, 3), stride=(patch, 1), padding=(0, 1)), _norm(c_out), nn.GELU()
        )


class Encoder(nn.Module):
    """Compressed complex spectrogram features -> list of feature maps (finest first)."""

    def __init__(
        self, channels: list[int], time_strides: list[int], in_channels: int = 3, freq_patch: int = 1
    ):
        super().__init__()
        self.stem = (
            ConvBlock(in_channels, channels[0])
            if freq_patch == 1
            else PatchStem(in_channels, channels[0], freq_patch)
        )
        self.downs = nn.ModuleList(
            ConvBlock(channels[i], channels[i + 1], stride=(2, time_strides[i]))
            for i in range(len(channels) - 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class Decoder(nn.Module):
    """Bottleneck -> 2-channel mask logits. Called with ``skips=None`` it uses no skip features."""

    def __init__(
        self,
        channels: list[int],
        time_strides: list[int],
        bottleneck_channels: int | None = None,
        freq_patch: int = 1,
    ):
        super().__init__()
        rev = channels[::-1]
        strides = time_strides[::-1]
        ins = [bottleneck_channels or rev[0], *rev[1:]]
        self.ups = nn.ModuleList(
            UpBlock(ins[i], rev[i + 1], rev[i + 1], stride=(2, strides[i])) for i in range(len(rev) - 1)
        )
        # With frequency patches the head gives every bin of a patch its own mask value.
        self.head = (
            nn.Conv2d(channels[0], 2, 1)
            if freq_patch == 1
            else nn.ConvTranspose2d(channels[0], 2, (freq_patch, 1), stride=(freq_patch, 1))
        )
        # Start near a pass-through mask (about 0.8 on every bin): training begins from the noisy input.
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([1.0, 0.0]))

    def forward(self, bottleneck: torch.Tensor, skips: list[torch.Tensor] | None) -> torch.Tensor:
        x = bottleneck
        for i, up in enumerate(self.ups):
            x = up(x, skips[-(i + 2)] if skips is not None else None)
        return self.head(x)


def bounded_mask(logits: torch.Tensor, mask_max: float) -> torch.Tensor:
    """(B, 2, F, T) logits -> (B, 2, F, T) real and imaginary parts of a complex mask with magnitude below
    ``mask_max`` (tanh-bounded). Real arithmetic only, so it exports to ONNX with the network."""
    logits = logits.float()
    mag = logits.square().sum(1, keepdim=True).sqrt()
    return logits * (mask_max * torch.tanh(mag / mask_max) / mag.clamp_min(1e-8))


class SpectralMaskNet(nn.Module):
    """Waveform in, waveform out: STFT front end, features, and masked re-synthesis.

    Subclasses turn features into mask logits. Any input length works: the waveform is
    zero-padded to ``valid_length`` and trimmed back.
    """

    def __init__(
        self,
        n_fft: int,
        hop: int,
        channels,
        time_strides,
        mask_max: float,
        compress: float,
        freq_patch: int = 1,
    ):
        super().__init__()
        channels, time_strides = list(channels), list(time_strides)
        if len(time_strides) != len(channels) - 1:
            raise ValueError(
                f"time_strides needs {len(channels) - 1} entries (one per down-sampling), "
                f"got {len(time_strides)}"
            )
        if (n_fft // 2) % (freq_patch * 2 ** (len(channels) - 1)):
            raise ValueError(
                f"n_fft // 2 = {n_fft // 2} must be divisible by freq_patch * 2^{len(channels) - 1} "
                f"= {freq_patch * 2 ** (len(channels) - 1)}"
            )
        self.stft = STFT(n_fft, hop)
        self.mask_max = mask_max
        self.compress = compress
        self.time_factor = 1
        for s in time_strides:
            self.time_factor *= s

    def valid_length(self, num_samples: int) -> int:
        """Smallest length >= num_samples whose frame count the U-Net halves without padding."""
        hop = self.stft.hop
        frames = -(-num_samples // hop) + 1
        frames = -(-frames // self.time_factor) * self.time_factor
        return (frames - 1) * hop

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """Power-law compressed magnitude and compressed real/imag parts, Nyquist bin dropped."""
        spec = spec[:, :-1]
        mag = spec.abs().clamp_min(1e-8)
        comp = mag**self.compress
        return torch.stack([comp, comp * spec.real / mag, comp * spec.imag / mag], dim=1)

    def analyse(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., N) waveform, zero-padded to a valid length -> (complex spectrogram, features)."""
        n = wave.shape[-1]
        padded = F.pad(wave.reshape(-1, n), (0, self.valid_length(n) - n))
        spec = self.stft(padded)
        return spec, self.features(spec)

    def synthesise(self, spec: torch.Tensor, logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Apply the mask from ``logits`` and return a waveform shaped like ``like``."""
        return self.apply_mask(spec, bounded_mask(logits, self.mask_max), like)

    def apply_mask(self, spec: torch.Tensor, mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Apply a (B, 2, F, T) real/imaginary mask and return a waveform shaped like ``like``."""
        mask = torch.complex(mask[:, 0], mask[:, 1])
        mask = torch.cat([mask, mask[:, -1:]], dim=1)  # the top bin's mask serves Nyquist too
        n = like.shape[-1]
        wave = self.stft.inverse(spec * mask, self.valid_length(n))
        return wave[..., :n].reshape(like.shape).to(like.dtype)

    def inference_mask(self, features: torch.Tensor) -> torch.Tensor:
        """Features -> the (B, 2, F, T) mask the network restores with: its whole learned part, which an
        export to ONNX holds (restoring/export.py); the STFT around it is fixed arithmetic."""
        raise NotImplementedError

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec, feats = self.analyse(wave)
        return self.apply_mask(spec, self.inference_mask(feats), wave)


class SpectralUNet(SpectralMaskNet):
    """2D U-Net with skip connections predicting a complex ratio mask (the supervised model)."""

    def __init__(
        self,
        *,
        n_fft: int,
        hop: int,
        channels,
        time_strides,
        context_dilations,
        mask_max: float,
        compress: float,
        freq_patch: int,
    ):
        super().__init__(n_fft, hop, channels, time_strides, mask_max, compress, freq_patch)
        channels, time_strides = list(channels), list(time_strides)
        self.encoder = Encoder(channels, time_strides, freq_patch=freq_patch)
        self.context = TemporalContext(channels[-1], tuple(context_dilations))
        self.decoder = Decoder(channels, time_strides, freq_patch=freq_patch)

    def inference_mask(self, features: torch.Tensor) -> torch.Tensor:
        skips = self.encoder(features)
        return bounded_mask(self.decoder(self.context(skips[-1]), skips), self.mask_max)
