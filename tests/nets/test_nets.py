"""The spectral U-Net: shapes, valid lengths, serialisation."""

import pytest
import torch

from lightning_app.nets import build_net
from lightning_app.nets.unet import SpectralUNet, bounded_mask
from tests.helpers import net_settings

TINY = net_settings("spectral_unet", channels=[4, 8, 8], time_strides=[1, 2], context_dilations=[1, 2])


@pytest.mark.parametrize("n", [1, 255, 1001, 4097, 16000, 24321])
def test_output_length_equals_input_length(n):
    net = SpectralUNet(**TINY)
    for shape in [(n,), (2, 1, n), (3, n)]:
        assert net(torch.randn(shape)).shape == shape


def test_valid_length_is_the_smallest_unpadded_length():
    net = SpectralUNet(
        **net_settings("spectral_unet", n_fft=512, hop=256, channels=[4, 8, 8, 8], time_strides=[2, 2, 1])
    )
    for n in (100, 16000, 24000, 48001):
        v = net.valid_length(n)
        assert v >= n and net.valid_length(v) == v
        assert (v // 256 + 1) % 4 == 0
        assert net.valid_length(v - 256) != v - 256 or v - 256 < n


def test_initial_mask_is_a_near_pass_through():
    net = SpectralUNet(**TINY).eval()
    x = torch.randn(1, 1, 8000)
    ratio = net(x).norm() / x.norm()
    assert 0.6 < float(ratio) < 1.0


def test_mask_magnitude_is_bounded():
    logits = torch.randn(2, 2, 8, 5) * 100
    assert float(bounded_mask(logits, 1.25).square().sum(1).sqrt().max()) <= 1.25 + 1e-5


def test_serialise_reload_gives_the_same_output(tmp_path):
    net = build_net("spectral_unet", **TINY).eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    again = build_net("spectral_unet", **TINY).eval()
    again.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    x = torch.randn(2, 1, 3000)
    torch.testing.assert_close(net(x), again(x))


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="time_strides needs 2"):
        SpectralUNet(**{**TINY, "time_strides": [1]})
    with pytest.raises(ValueError, match="unknown|not one of"):
        build_net("transformer")


WAVE_TINY = net_settings("wave_unet", channels=[4, 8, 8], strides=[4, 2], context_dilations=[1, 2])


@pytest.mark.parametrize("n", [1, 7, 255, 1001, 4097, 16001])
def test_the_wave_unet_keeps_any_length(n):
    from lightning_app.nets.wave_unet import WaveUNet

    net = WaveUNet(**WAVE_TINY)
    for shape in [(n,), (2, 1, n), (3, n)]:
        assert net(torch.randn(shape)).shape == shape
    assert net.valid_length(n) % 8 == 0 and net.valid_length(n) >= n


def test_the_wave_unet_trains_a_step_and_its_output_is_unbounded():
    """A linear head on the waveform: unlike the bounded mask it can output far more, or nothing (it can
    mute)."""
    from lightning_app.nets.wave_unet import WaveUNet

    torch.manual_seed(0)
    net = WaveUNet(**WAVE_TINY)
    x = torch.randn(4, 1, 2000)
    before = [p.detach().clone() for p in net.parameters()]
    loss = (net(x) - 0.5 * x).abs().mean()
    loss.backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    with torch.no_grad():
        net.head.bias.fill_(3.0)
        assert float(net(x).mean()) > 2.0, "the head's output is not bounded by the input"
        net.head.weight.zero_()
        net.head.bias.zero_()
        assert float(net(x).abs().max()) == 0.0, "and it can be silent"
