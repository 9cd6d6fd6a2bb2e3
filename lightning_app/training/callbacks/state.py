"""Random-number-generator state in checkpoints, so a resumed run continues the same streams.

Lightning checkpoints hold model, optimiser, scheduler and loop state but not RNG state.
The data pipeline does not need it (every example is a function of its key), but any
randomness in a model or augmentation does. Stored as tensors and plain lists so the
checkpoint still loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch


class RNGState(L.Callback):
    def state_dict(self) -> dict:
        np_state = np.random.get_state()
        python_state = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [
                np_state[0],
                torch.from_numpy(np_state[1].astype(np.int64)),
                int(np_state[2]),
                int(np_state[3]),
                float(np_state[4]),
            ],
            "python": [python_state[0], list(python_state[1]), python_state[2]],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
