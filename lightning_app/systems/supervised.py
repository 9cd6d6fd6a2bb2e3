"""Supervised denoising: the network's output against the clean target."""

from __future__ import annotations

import torch

from lightning_app.systems.base import DenoiseSystem
from lightning_app.systems.losses import waveform_loss_terms, weighted_sum


class SupervisedSystem(DenoiseSystem):
    kind = "supervised"

    def shared_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        estimate = self.net(batch["noisy"])
        terms = waveform_loss_terms(estimate, batch["clean"], self.loss_weights, source=batch["noisy"])
        terms["loss"] = weighted_sum(terms, self.loss_weights)
        return terms, {"estimate": estimate}
