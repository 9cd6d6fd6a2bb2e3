"""The shared training logic of every variant.

A variant overrides ``shared_step`` (batch -> loss terms with the total under "loss", and the network outputs
they came from) and, when its inference path is not ``self.net(noisy)``, ``enhance``. Everything else —
logging, the non-finite guard, validation outputs for the metric callbacks, optimisers — lives here.
"""

from __future__ import annotations

import math
import warnings

import lightning as L
import torch

from lightning_app import compat
from lightning_app.nets import build_net


class CosinePlan:
    """The cosine learning-rate factor per optimizer step: ``start_factor`` at ``start`` down to 0 at ``end``.

    A callable object rather than CosineAnnealingLR: its fields travel in the checkpoint (LambdaLR saves
    a callable object's attributes), and a resumed run with a different length re-plans from where it
    stands, so the rate stays continuous and still reaches its floor at the new end.
    """

    def __init__(self, end: int, start: int = 0, start_factor: float = 1.0):
        self.start, self.start_factor, self.end = start, start_factor, end

    def __call__(self, step: int) -> float:
        span = max(self.end - self.start, 1)
        progress = min(max(step - self.start, 0) / span, 1.0)
        return self.start_factor * 0.5 * (1.0 + math.cos(math.pi * progress))

    def replan(self, step: int, end: int) -> None:
        self.start_factor, self.start, self.end = self(step), step, end


class DenoiseSystem(L.LightningModule):
    #: registry name, stored in checkpoints so lightning_app.denoise rebuilds the right variant
    kind: str = "base"
    #: batch keys the variant's loss may read (clean is only for metrics in Noise2Noise)
    loss_inputs: tuple[str, ...] = ("noisy", "clean")

    def __init__(self, model: dict, loss: dict, optim: dict, sample_rate: int):
        super().__init__()
        # Plain dicts only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters(logger=False)
        self.net = build_net(**model)
        self.loss_weights = dict(loss)
        self.optim_cfg = dict(optim)
        self.sample_rate = sample_rate
        self.skipped_batches = 0

    @classmethod
    def arguments_from_config(cls, cfg) -> dict:
        """Constructor arguments from the run config, as plain containers."""
        from lightning_app.config import to_container

        # The chosen network's settings and the chosen system's weights: checkpoints keep this flat shape.
        kind = cfg.model.kind
        return {
            "model": {"kind": kind, **to_container(cfg.model[kind])},
            "loss": {k: float(v) for k, v in to_container(cfg.system[cfg.system.kind]).items()},
            "optim": to_container(cfg.optim),
            "sample_rate": int(cfg.data.sample_rate),
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["system_kind"] = self.kind
        compat.stamp_checkpoint(checkpoint)

    def enhance(self, noisy: torch.Tensor) -> torch.Tensor:
        """The inference path used by validation metrics and lightning_app.denoise."""
        return self.net(noisy)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.enhance(noisy)

    def shared_step(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(loss terms, the weighted sum under ``loss``; the network outputs they were computed from)."""
        raise NotImplementedError

    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        # Every rank must agree to skip, or DDP's gradient all-reduce waits forever.
        return bool(self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms, _ = self.shared_step(batch)
        loss = terms["loss"]
        if not self._finite_everywhere(loss):
            self.skipped_batches += 1
            self.log("train_status/skipped_batches", float(self.skipped_batches), rank_zero_only=True)
            # A zero loss that still touches every parameter keeps DDP's reducer in step.
            return sum(p.sum() * 0.0 for p in self.parameters())
        batch_size = batch["noisy"].shape[0]
        named = {("loss" if k == "loss" else f"loss_{k}"): v.detach() for k, v in terms.items()}
        # Epoch means under the names validation uses (train/loss_mrstft next to val/loss_mrstft, one chart
        # each in the custom-scalars layout); every step's values apart, under train_step/.
        self.log_dict(
            {f"train/{k}": v for k, v in named.items()}, on_step=False, on_epoch=True, batch_size=batch_size
        )
        self.log_dict(
            {f"train_step/{k}": v for k, v in named.items()},
            on_step=True,
            on_epoch=False,
            batch_size=batch_size,
        )
        self.log(
            "loss",
            loss.detach(),
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            logger=False,
            batch_size=batch_size,
        )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        terms, _ = self.shared_step(batch)
        self.log_validation_terms(terms, batch)
        return {"estimate": self.enhance(batch["noisy"]).detach()}

    def log_validation_terms(self, terms: dict[str, torch.Tensor], batch: dict) -> None:
        self.log_dict(
            {f"val/loss_{k}" if k != "loss" else "val/loss": v for k, v in terms.items()},
            on_epoch=True,
            sync_dist=True,
            batch_size=batch["noisy"].shape[0],
        )

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return {"estimate": self.enhance(batch["noisy"]).detach()}

    def configure_optimizers(self):
        cfg = self.optim_cfg
        optimizer = torch.optim.AdamW(self.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        kind = cfg["scheduler"]
        if kind == "constant":
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        if kind == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg["lr"], total_steps=max(total, 2), pct_start=cfg["warmup_fraction"]
            )
        elif kind == "cosine":
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, CosinePlan(end=max(total, 1)))
        else:
            raise ValueError(f"optim.scheduler must be onecycle, cosine or constant, got {kind!r}")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        """A resumed run may have more (or fewer) steps than planned: re-plan the cosine from here."""
        scheduler = self.lr_schedulers()
        plan = getattr(scheduler, "lr_lambdas", [None])[0]
        if not isinstance(plan, CosinePlan):
            return
        trainer = self.trainer
        per_epoch = trainer.estimated_stepping_batches / max(trainer.max_epochs, 1)
        end = self.global_step + round((trainer.max_epochs - trainer.current_epoch) * per_epoch)
        if end != plan.end and self.global_step > 0:
            plan.replan(self.global_step, end)
            if plan.start_factor < 1e-3:
                warnings.warn(
                    "the cosine learning rate had reached its floor when this run was resumed with more "
                    "epochs; they train at that floor. To train on with a new schedule, start a run from "
                    "its weights with system.init_from=<its last.ckpt>.",
                    stacklevel=1,
                )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        compat.upgrade_scheduler_states(checkpoint)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(
            optimizer, gradient_clip_val=self.optim_cfg["grad_clip"] or None, gradient_clip_algorithm="norm"
        )
