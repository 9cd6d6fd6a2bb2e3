"""Loss terms: the multi-resolution STFT term's relative log floor."""

import math

import torch

from lightning_app.systems.losses import multi_resolution_stft


def _band_limited(seconds=0.5, rate=16000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    tones = sum(
        torch.sin(2 * math.pi * f * t + float(torch.rand(1, generator=g)) * 6) for f in (220, 440, 660, 1100)
    )
    return (0.3 * tones / 4).reshape(1, 1, -1)


def test_inaudible_differences_in_empty_bins_cost_nothing():
    target = _band_limited()
    g = torch.Generator().manual_seed(1)
    whisper = target + 1e-6 * torch.randn(target.shape, generator=g)  # ~ -110 dB: below the floor
    audible = target + 1e-2 * torch.randn(target.shape, generator=g)  # ~ -30 dB hiss everywhere
    assert multi_resolution_stft(whisper, target) < 0.01
    assert multi_resolution_stft(audible, target) > 20 * multi_resolution_stft(whisper, target)


def test_a_level_error_is_measured_on_the_signal():
    target = _band_limited()
    half = multi_resolution_stft(0.5 * target, target)
    # Spectral convergence 0.5 plus |log 2| on the bins above the floor (most of their weight).
    assert 0.6 < float(half) < 0.5 + math.log(2) + 0.05
    assert float(multi_resolution_stft(target, target)) < 1e-6
