"""Shared encoder with two decoders (a, b) for Noise2Noise on pairs (x_a, x_b).

    z_a, skips_a = encoder(x_a)            z_b, skips_b = encoder(x_b)
    recon_a = decoder_a(z_a, skips_a)      cross_a = decoder_a(z_b, skips?)   -> target x_a
    recon_b = decoder_b(z_b, skips_b)      cross_b = decoder_b(z_a, skips?)   -> target x_b

Each decoder predicts a mask applied to its *input's* spectrogram (cross_a masks x_b), so a
cross output is a function of the other copy alone, as Noise2Noise needs.

The research found that skip connections in the cross path break that: decoder_a(z_b, skips_a)
gets x_a's own detail through the skips and learns to copy it, noise_a included, into an output
whose target is x_a. So the cross path (``model.cross_domain.strategy: no_skip``, the default) and the
inference path use no skips; ``skip`` (cross path fed the *target's* skips, the research's
leaking design) is kept for the ablation; a model trained that way also denoises through its
skips (decoder_a(z_x, skips_x)), as the research's did, since its decoders never ran without them.

``source_skip`` feeds the cross path the skips of its *source* copy, decoder_a(z_b, skips_b): every input
of the output comes from x_b, whose noise is independent of x_a's, so copying detail through the skips
cannot lower the loss unless it is signal (classic Noise2Noise with a U-Net). Leakage is measured as for
the others; inference then denoises through its input's own skips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lightning_app.nets.unet import Decoder, Encoder, SpectralMaskNet, TemporalContext, bounded_mask

STRATEGIES = ("no_skip", "skip", "source_skip")
INFERENCE = ("a", "b", "mean")


@dataclass
class Encoded:
    spec: torch.Tensor  # complex input spectrogram (the mask is applied to it)
    z: torch.Tensor  # latent (B, latent, F', T')
    skips: list[torch.Tensor]  # encoder feature maps, finest first


class CrossDomainNet(SpectralMaskNet):
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
        latent_channels: int,
        strategy: str,
        inference_decoder: str,
        shared_decoder: bool,
    ):
        super().__init__(n_fft, hop, channels, time_strides, mask_max, compress, freq_patch)
        if strategy not in STRATEGIES:
            raise ValueError(f"model.cross_domain.strategy must be one of {STRATEGIES}, got {strategy!r}")
        if inference_decoder not in INFERENCE:
            raise ValueError(
                f"model.cross_domain.inference_decoder must be one of {INFERENCE}, got {inference_decoder!r}"
            )
        channels, time_strides = list(channels), list(time_strides)
        self.cross_domain_strategy = strategy
        self.inference_decoder = inference_decoder
        self.encoder = Encoder(channels, time_strides, freq_patch=freq_patch)
        self.context = TemporalContext(channels[-1], tuple(context_dilations))
        self.to_latent = nn.Conv2d(channels[-1], latent_channels, 1)
        self.decoder_a = Decoder(
            channels, time_strides, bottleneck_channels=latent_channels, freq_patch=freq_patch
        )
        # One decoder for both copies (shared_decoder) learns from both cross directions: twice the examples
        # for the weights that denoise, at the same cost.
        self.decoder_b = (
            self.decoder_a
            if shared_decoder
            else Decoder(channels, time_strides, bottleneck_channels=latent_channels, freq_patch=freq_patch)
        )

    def encode(self, wave: torch.Tensor) -> Encoded:
        spec, feats = self.analyse(wave)
        skips = self.encoder(feats)
        return Encoded(spec, self.to_latent(self.context(skips[-1])), skips)

    def decode(
        self, decoder: Decoder, source: Encoded, like: torch.Tensor, skips: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """decoder(z_source, skips) -> mask on the source's spectrogram -> waveform shaped like ``like``."""
        return self.synthesise(source.spec, decoder(source.z, skips), like)

    def cross(self, decoder: Decoder, source: Encoded, target: Encoded, like: torch.Tensor) -> torch.Tensor:
        """decoder(z_source) on the source's spectrogram; the *target's* skips under 'skip', the source's
        own under 'source_skip', none under 'no_skip'."""
        skips = {"skip": target.skips, "source_skip": source.skips}.get(self.cross_domain_strategy)
        return self.decode(decoder, source, like, skips)

    def paths(self, x_a: torch.Tensor, x_b: torch.Tensor, recon: bool = True) -> dict[str, torch.Tensor]:
        """Every training output for a pair: latents, cross outputs and (``recon``) the reconstructions with
        skips, which a loss without a recon term need not pay two decoder passes for."""
        a, b = self.encode(x_a), self.encode(x_b)
        out = {
            "z_a": a.z,
            "z_b": b.z,
            "cross_a": self.cross(self.decoder_a, b, a, x_b),  # target x_a
            "cross_b": self.cross(self.decoder_b, a, b, x_a),  # target x_b
        }
        if recon:
            out["recon_a"] = self.decode(self.decoder_a, a, x_a, a.skips)
            out["recon_b"] = self.decode(self.decoder_b, b, x_b, b.skips)
        return out

    def inference_mask(self, features: torch.Tensor) -> torch.Tensor:
        """Inference: the no-skip path of decoder a, b, or the mean of both (the mean of their masks is the
        mean of their waveforms: resynthesis is linear).

        Under ``skip`` and ``source_skip`` the decoders were trained with skip features, so those
        models are run the way they were trained: through the input's own skips.
        """
        all_skips = self.encoder(features)
        z = self.to_latent(self.context(all_skips[-1]))
        skips = all_skips if self.cross_domain_strategy in ("skip", "source_skip") else None
        masks = [
            bounded_mask(decoder(z, skips), self.mask_max)
            for name, decoder in (("a", self.decoder_a), ("b", self.decoder_b))
            if self.inference_decoder in (name, "mean")
        ]
        return masks[0] if len(masks) == 1 else 0.5 * (masks[0] + masks[1])
