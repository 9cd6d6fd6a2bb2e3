"""Supervised denoising: the network's output against the clean target."""

from __future__ import annotations

import torch

from lightning_app.systems.base import DenoiseSystem
from lightning_app.systems.losses import no_harm, waveform_loss_terms, weighted_sum


class SupervisedSystem(DenoiseSystem):
    kind = "supervised"

    def shared_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        estimate = self.net(batch["noisy"])
        # no_harm also reads the input, so it is the one term outside the (estimate, target) table.
        waveform_weights = {k: w for k, w in self.loss_weights.items() if k != "no_harm"}
        terms = waveform_loss_terms(estimate, batch["clean"], waveform_weights)
        if self.loss_weights.get("no_harm"):
            terms["no_harm"] = no_harm(estimate, batch["clean"], batch["noisy"])
        terms["loss"] = weighted_sum(terms, self.loss_weights)
        return terms, {"estimate": estimate}
