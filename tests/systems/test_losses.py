"""Loss terms: the multi-resolution STFT term's relative log floor; the no_harm hinges (whole example, band by
band) and their wiring."""

import math

import pytest
import torch

from lightning_app.systems.losses import band_no_harm, multi_resolution_stft, no_harm
from lightning_app.training.run import build_datamodule, build_system
from tests.helpers import smoke_config


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


def test_no_harm_costs_only_the_examples_the_output_makes_worse():
    clean = torch.cat([_band_limited(seed=0), _band_limited(seed=1)])
    g = torch.Generator().manual_seed(2)
    noise = 0.01 * torch.randn(clean.shape, generator=g)
    noisy = clean + noise
    improved = clean + 0.1 * noise  # 20 dB better than the input
    assert float(no_harm(improved, clean, noisy)) == 0.0
    # The second example's output is 10x noisier than its input: 20 dB of harm, half the batch.
    harmed = torch.cat([improved[:1], clean[1:] + 10 * noise[1:]])
    assert abs(float(no_harm(harmed, clean, noisy)) - 20.0 / 10.0 / 2) < 0.05
    # Its gradient reaches only the harmed example.
    harmed.requires_grad_(True)
    no_harm(harmed, clean, noisy).backward()
    assert float(harmed.grad[0].abs().sum()) == 0.0 and float(harmed.grad[1].abs().sum()) > 0.0


def _band(x: torch.Tensor, low: float, high: float, rate: int) -> torch.Tensor:
    spectrum = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1.0 / rate)
    return torch.fft.irfft(spectrum * ((freqs >= low) & (freqs < high)), n=x.shape[-1])


def _level(x: torch.Tensor, db: float, reference: torch.Tensor) -> torch.Tensor:
    return x * (reference.pow(2).mean() / x.pow(2).mean()).sqrt() * 10 ** (db / 20)


def test_band_no_harm_sees_a_band_taken_away_that_the_whole_example_does_not():
    rate = 16000
    g = torch.Generator().manual_seed(3)
    tones = _band_limited(seconds=1.0, rate=rate)
    bright = _level(_band(torch.randn(tones.shape, generator=g), 5000, 7000, rate), -35.0, tones)
    clean = tones + bright  # loud low notes and a quiet bright top, like cymbals over an orchestra
    rumble = _level(_band(torch.randn(tones.shape, generator=g), 20, 300, rate), -20.0, clean)
    hiss = _level(torch.randn(tones.shape, generator=g), -70.0, clean)
    noisy = clean + rumble + hiss
    # The output takes the rumble away and the bright top with it: 15 dB better as a whole, so no_harm
    # sees nothing, but in the top bands it removed music far above the noise that was there.
    dulled = tones + hiss
    assert float(no_harm(dulled, clean, noisy)) == 0.0
    # 5-7 kHz falls in two of the 22 log-spaced bands at 16 kHz (1024 points), each harmed by about 35 dB
    # (capped where the error is the band's whole signal): more than 2 x 30 dB / 22 bands, in units of 10 dB.
    assert float(band_no_harm(dulled, clean, noisy)) > 2 * 30 / 22 / 10
    # Removing only noise harms no band, and an error 60 dB below each band's own signal costs next to nothing
    # (under 0.01 dB: it only adds to the noise within the free 35 dB).
    assert float(band_no_harm(clean + 0.5 * (rumble + hiss), clean, noisy)) == 0.0
    assert float(band_no_harm(clean * (1 + 1e-3) + rumble + hiss, clean, noisy)) < 1e-3
    # Its gradient reaches the harmed output.
    dulled.requires_grad_(True)
    band_no_harm(dulled, clean, noisy).backward()
    assert float(dulled.grad.abs().sum()) > 0.0


class _AddsNoise(torch.nn.Module):
    """A network that makes every example worse: its input plus noise at the input's own level."""

    def forward(self, noisy):
        return noisy + noisy.std() * torch.randn(noisy.shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("term", ["no_harm", "band_no_harm"])
def test_the_supervised_loss_adds_a_no_harm_term_only_when_weighted(tmp_path, term):
    def step(*overrides):
        cfg = smoke_config(tmp_path, *overrides)
        system = build_system(cfg)
        dm = build_datamodule(cfg, system)
        dm.setup("fit")
        system.net = _AddsNoise()
        return system.shared_step(next(iter(dm.train_dataloader())))[0]

    plain = step()
    assert term not in plain
    weighted = step(f"system.supervised.{term}=2.0")
    assert float(weighted[term]) > 0.1, "a network that adds noise harms every example"
    for name in set(plain) - {"loss"}:
        assert torch.allclose(weighted[name], plain[name]), f"{name} changed with the {term} weight"
    assert torch.allclose(weighted["loss"], plain["loss"] + 2.0 * weighted[term])
