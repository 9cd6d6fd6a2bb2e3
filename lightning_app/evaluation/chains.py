"""Reconstruction chains: how much each representation step loses, measured on clean speech.

The research's chain waveform -> mel -> VAE -> mel -> Griffin-Lim lost almost all waveform
correlation. These chains take it apart one step at a time, so each step's loss is visible:

    stft          STFT -> inverse STFT                      (should be near-perfect)
    magnitude     |STFT| -> Griffin-Lim                     (phase loss)
    mel           mel -> inverse mel -> Griffin-Lim         (mel loss on top of phase loss)

Each chain is ``fn(audio (N,), sample_rate) -> audio (N,)`` at one STFT/mel setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.transforms as T

Chain = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class ChainSpec:
    kind: str  # stft | magnitude | mel
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    griffin_lim_iters: int = 64

    @property
    def name(self) -> str:
        base = {
            "stft": "STFT -> iSTFT",
            "magnitude": "magnitude -> Griffin-Lim",
            "mel": f"mel {self.n_mels} -> inverse mel -> Griffin-Lim",
        }[self.kind]
        return f"{base} (n_fft {self.n_fft}, hop {self.hop})"


# The research's suggestion (n_fft 2048, 128 mels, hop 128) next to a common 64-mel setting.
DEFAULT_CHAINS = (
    ChainSpec("stft", 1024, 256),
    ChainSpec("magnitude", 1024, 256),
    ChainSpec("mel", 1024, 256, n_mels=64),
    ChainSpec("mel", 2048, 128, n_mels=128),
)


def parse_chain(text: str) -> ChainSpec:
    """'mel:2048:128:128' -> ChainSpec('mel', 2048, 128, 128); 'stft:1024:256'; 'magnitude:512:128'."""
    parts = text.split(":")
    if parts[0] not in ("stft", "magnitude", "mel") or len(parts) > 4:
        raise ValueError(f"chain {text!r}: expected stft|magnitude|mel[:n_fft[:hop[:n_mels]]]")
    numbers = [int(p) for p in parts[1:]]
    return ChainSpec(parts[0], *numbers)


def build_chain(spec: ChainSpec) -> Chain:
    window = torch.hann_window(spec.n_fft)

    def stft(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, spec.n_fft, spec.hop, window=window, return_complex=True)

    def run(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        n = len(x)
        if spec.kind == "stft":
            y = torch.istft(stft(x), spec.n_fft, spec.hop, window=window, length=n)
            return y.numpy()
        torch.manual_seed(0)  # Griffin-Lim starts from random phase: the same start every time
        griffin_lim = T.GriffinLim(
            n_fft=spec.n_fft, hop_length=spec.hop, power=1.0, n_iter=spec.griffin_lim_iters, length=n
        )
        magnitude = stft(x).abs()
        if spec.kind == "mel":
            to_mel = T.MelScale(n_mels=spec.n_mels, sample_rate=sample_rate, n_stft=spec.n_fft // 2 + 1)
            from_mel = T.InverseMelScale(
                n_stft=spec.n_fft // 2 + 1, n_mels=spec.n_mels, sample_rate=sample_rate
            )
            magnitude = from_mel(to_mel(magnitude)).clamp_min(0.0)
        return griffin_lim(magnitude).numpy()

    return run
