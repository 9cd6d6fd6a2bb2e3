"""Launched by test_ddp.py in a subprocess: Lightning's strategy="ddp" re-runs this script for rank 1.

python tests/ddp_worker.py validate DEVICES CKPT OUT_JSON ROOT
python tests/ddp_worker.py fit DEVICES - OUT_DIR ROOT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_app.systems.checkpoints import load_system  # noqa: E402
from lightning_app.training import run as T  # noqa: E402
from tests.helpers import smoke_config  # noqa: E402

DDP = ["trainer.accelerator=cpu", "trainer.strategy=ddp", "trainer.enable_progress_bar=false"]


def validate(devices: int, checkpoint: str, out: Path, root: Path) -> None:
    cfg = smoke_config(
        root,
        *DDP,
        f"trainer.devices={devices}",
        "data.val_clips=5",
        "metrics.perceptual_clips=5",
        experiment="pure_noise2noise",
    )
    system = load_system(checkpoint)
    datamodule = T.build_datamodule(cfg, system)
    callbacks = T.build_callbacks(cfg, root / "unused")[:3]  # waveform, perceptual, alarm
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        use_distributed_sampler=False,
    )
    trainer.validate(system, datamodule=datamodule, verbose=False)
    if trainer.is_global_zero:
        out.write_text(json.dumps({k: float(v) for k, v in trainer.callback_metrics.items()}))


class RecordBatches(L.Callback):
    """Each rank writes a fingerprint of every training batch it drew."""

    def __init__(self, out: Path):
        self.out = out
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(round(float(batch["noisy"].double().abs().sum()), 6))

    def on_train_end(self, trainer, pl_module):
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def fit(devices: int, out: Path, root: Path) -> None:
    cfg = smoke_config(
        root,
        *DDP,
        f"trainer.devices={devices}",
        "trainer.max_epochs=1",
        "data.val_clips=5",
        "data.train_examples_per_epoch=32",
        "data.batch_size=4",
        experiment="pure_noise2noise",
    )
    original = T.build_callbacks
    T.build_callbacks = lambda c, d: original(c, d) + [RecordBatches(out)]
    result = T.train(cfg)
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    (out / "result.json").write_text(json.dumps({k: str(v) for k, v in result.items() if k != "metrics"}))


if __name__ == "__main__":
    mode, devices, checkpoint, out, root = sys.argv[1:6]
    if mode == "validate":
        validate(int(devices), checkpoint, Path(out), Path(root))
    else:
        fit(int(devices), Path(out), Path(root))
