"""The torch engine's network call: a checkpoint's network in torch, on a CPU or a GPU.

Only the chunks cross to the device and back; the block pipeline around it is the numpy one that the ONNX
engine runs too (restoring/engine.py), so the two engines differ in this call alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


class TorchNetwork:
    """A torch module with ``enhance`` ((batch, 1, samples) -> same) and ``sample_rate``, on its device."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.sample_rate = int(model.sample_rate)
        self.kind = getattr(model, "kind", "")
        self.card = getattr(model, "card", {})
        self.device = next(model.parameters()).device
        self.engine = f"torch on {self.device}"
        # a GPU is fed in bulk; on a CPU bigger batches only cost memory
        self.batch_size = 16 if self.device.type == "cuda" else 2

    @torch.inference_mode()  # no_grad still records versions and views for autograd; nothing here needs them
    def enhance(self, batch: np.ndarray) -> np.ndarray:
        chunks = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        return self.model.enhance(chunks[:, None]).float()[:, 0].cpu().numpy()


def load_torch_network(checkpoint: Path, device: str = "auto", threads: int | None = None) -> TorchNetwork:
    from lightning_app.systems.checkpoints import load_model

    if threads:
        torch.set_num_threads(threads)
    return TorchNetwork(load_model(checkpoint, resolve_device(device)))
