"""The Noise2Noise family: pure, extreme-latent and two-stage progressive share this system.

No clean signal enters a loss: the terms see only x_a and x_b. Clean and the two noises
are read in validation, for metrics and the leakage diagnostic only.
"""

from __future__ import annotations

import torch

from lightning_app.metrics.functional import pearson
from lightning_app.metrics.quality import ClipMeans
from lightning_app.nets.cross_domain import CrossDomainNet
from lightning_app.systems import losses
from lightning_app.systems.base import DenoiseSystem

TERMS = ("content", "recon", "cross", "cross_snr", "edge")
DIAGNOSTICS = ("leakage", "leakage_a", "leakage_b", "residual_noise", "cross_si_sdr_i")


class Noise2NoiseSystem(DenoiseSystem):
    kind = "noise2noise"
    loss_inputs = ("noisy", "noisy_b")

    def __init__(self, model: dict, loss: dict, optim: dict, sample_rate: int):
        super().__init__(model, loss, optim, sample_rate)
        if not isinstance(self.net, CrossDomainNet):
            raise ValueError("system.kind=noise2noise needs model.kind=cross_domain")
        unknown = sorted(set(loss) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown Noise2Noise loss term(s) {unknown}; known: {list(TERMS)}")
        self.diagnostics = ClipMeans(DIAGNOSTICS)

    def shared_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        x_a, x_b = batch["noisy"], batch["noisy_b"]
        w = self.loss_weights
        paths = self.net.paths(x_a, x_b, recon=bool(w.get("recon")))
        terms = {
            "content": losses.content(paths["z_a"], paths["z_b"]),
            "cross": losses.noise2noise_mse(paths["cross_a"], x_a, x_b)
            + losses.noise2noise_mse(paths["cross_b"], x_b, x_a),
        }
        if "recon_a" in paths:
            terms["recon"] = losses.noise2noise_mse(paths["recon_a"], x_a, x_a) + losses.noise2noise_mse(
                paths["recon_b"], x_b, x_b
            )
        if w.get("cross_snr"):
            # -SNR of each cross output against its noisy target: in a clip's thousands of samples the target
            # noise adds a near-constant to the error energy, so the minimum is still the clean signal, while
            # each clip weighs in dB rather than by its share of the batch's error energy
            terms["cross_snr"] = losses.neg_snr(paths["cross_a"], x_a) + losses.neg_snr(paths["cross_b"], x_b)
        if w.get("edge"):
            terms["edge"] = losses.edge(paths["cross_a"], x_a) + losses.edge(paths["cross_b"], x_b)
        terms["loss"] = losses.weighted_sum(terms, {k: w.get(k, 0.0) for k in terms})
        return terms, paths

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        terms, paths = self.shared_step(batch)
        self.log_validation_terms(terms, batch)
        clean = batch["clean"]
        # Leakage: noise of the cross path's *target* copy inside its output. cross_a is made
        # from x_b and trained towards x_a, so noise_a can only be there if x_a's detail leaks
        # in (the skip design); with a clean separation it is chance-level correlation.
        error_a, error_b = paths["cross_a"] - clean, paths["cross_b"] - clean
        leak_a = pearson(error_a, batch["noise"]).abs()
        leak_b = pearson(error_b, batch["noise_b"]).abs()
        # Residual: the source copy's own noise still in the output (how much was not removed).
        residual = 0.5 * (pearson(error_a, batch["noise_b"]).abs() + pearson(error_b, batch["noise"]).abs())
        si_in = losses.si_sdr(batch["noisy_b"], clean)
        self.diagnostics.update(
            {
                "leakage": 0.5 * (leak_a + leak_b),
                "leakage_a": leak_a,
                "leakage_b": leak_b,
                "residual_noise": residual,
                "cross_si_sdr_i": losses.si_sdr(paths["cross_a"], clean) - si_in,
            }
        )
        return {"estimate": self.enhance(batch["noisy"]).detach()}

    def on_validation_epoch_end(self) -> None:
        values = self.diagnostics.compute()
        self.diagnostics.reset()
        self.log_dict({f"val/{k}": v for k, v in values.items()})

    @torch.no_grad()
    def media(self, batch: dict) -> dict[str, torch.Tensor]:
        """Cross output minus its target, per path: noise-like when nothing leaks, structured when it does."""
        paths = self.net.paths(batch["noisy"], batch["noisy_b"])
        return {
            "cross_a − x_a": paths["cross_a"] - batch["noisy"],
            "cross_b − x_b": paths["cross_b"] - batch["noisy_b"],
        }
