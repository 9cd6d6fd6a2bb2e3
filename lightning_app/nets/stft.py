"""STFT front end used inside the networks: waveform <-> complex spectrogram."""

from __future__ import annotations

import torch
from torch import nn


class STFT(nn.Module):
    """Hann-windowed, centred STFT. The Nyquist bin is kept in the spectrum but the
    networks see ``n_fft // 2`` bins, a power of two that halves cleanly."""

    def __init__(self, n_fft: int = 512, hop: int = 256):
        super().__init__()
        if n_fft % hop:
            raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop})")
        self.n_fft = n_fft
        self.hop = hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def frames(self, num_samples: int) -> int:
        return num_samples // self.hop + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> complex (batch, n_fft // 2 + 1, frames)."""
        # Zero padding at the edges (not reflection): works for inputs shorter than a window.
        return torch.stft(
            wave.float(),
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )

    def inverse(self, spec: torch.Tensor, num_samples: int) -> torch.Tensor:
        return torch.istft(spec, self.n_fft, self.hop, window=self.window, center=True, length=num_samples)
