"""AudioLDM2 VAE + vocoder chains, on a tiny randomly-initialised model folder written here (no downloads)."""

import csv
import sys

import numpy as np
import pytest
import torch

pytest.importorskip(
    "diffusers", reason="optional extra '.[audioldm2]' not installed (make setup installs it)"
)
pytest.importorskip(
    "transformers", reason="optional extra '.[audioldm2]' not installed (make setup installs it)"
)

from lightning_app import evaluate  # noqa: E402
from lightning_app.evaluation.audioldm2 import AudioLDM2Codec, check_model_dir  # noqa: E402


def write_tiny_audioldm2(folder):
    """The published pipeline's layout and settings (64 mels, hop 160 = 5*4*2*2*2, 16 kHz), tiny widths."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=8,
        norm_num_groups=4,
    ).save_pretrained(folder / "vae")
    SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=64,
            sampling_rate=16000,
            upsample_initial_channel=64,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[10, 8, 4, 4, 4],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1]],
            normalize_before=False,
        )
    ).save_pretrained(folder / "vocoder")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_audioldm2(tmp_path_factory.mktemp("audioldm2"))


def test_settings_come_from_the_folders_configs(model_dir):
    codec = AudioLDM2Codec.load(model_dir)
    assert (codec.sample_rate, codec.hop, codec.n_mels, codec.vae_stride) == (16000, 160, 64, 2)


def test_mel_front_end_frames_and_frequency_axis(model_dir):
    codec = AudioLDM2Codec.load(model_dir)
    t = torch.arange(16000) / 16000
    low, high = (codec.log_mel(0.5 * torch.sin(2 * torch.pi * f * t)) for f in (300.0, 3000.0))
    assert low.shape == (16000 // 160, 64), "one frame per hop (AudioLDM's padding, no centring)"
    peak_low, peak_high = int(low.mean(0).argmax()), int(high.mean(0).argmax())
    assert peak_low < peak_high, f"mel axis not rising with frequency: peaks at bins {peak_low}, {peak_high}"
    assert float(low.min()) >= np.log(1e-5) - 1e-6, "log floor is clamp(mel, 1e-5)"


@pytest.mark.parametrize("rate", [16000, 22050])
def test_each_chain_returns_the_input_length_and_uses_its_steps(model_dir, rate):
    codec = AudioLDM2Codec.load(model_dir)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(rate)).astype(np.float32)
    outputs = {
        name.split("-> ", 1)[1]: chain(audio, rate) for name, chain in codec.chains(griffin_lim_iters=4)
    }
    assert list(outputs) == ["Griffin-Lim", "HiFi-GAN", "VAE -> Griffin-Lim", "VAE -> HiFi-GAN"]
    for name, out in outputs.items():
        assert out.shape == audio.shape and np.isfinite(out).all(), name

    # The VAE and the vocoder are really in the path: each changes the result (relative to its scale:
    # the untrained vocoder's output is tiny).
    def differs(a, b):
        return np.abs(a - b).max() > 1e-3 * max(np.abs(a).max(), np.abs(b).max())

    assert differs(outputs["Griffin-Lim"], outputs["VAE -> Griffin-Lim"])
    assert differs(outputs["Griffin-Lim"], outputs["HiFi-GAN"])
    assert differs(outputs["HiFi-GAN"], outputs["VAE -> HiFi-GAN"])


@pytest.mark.slow
def test_chains_report_has_a_row_per_step(model_dir, tmp_path):
    out = tmp_path / "chains"
    assert (
        evaluate.main(
            [
                "--chains",
                "magnitude:512:128",
                "--audioldm2-dir",
                str(model_dir),
                "--clips",
                "2",
                "--seconds",
                "1.0",
                "--workers",
                "1",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    rows = {r["system"]: r for r in csv.DictReader(open(out / "chains.csv"))}
    setting = "AudioLDM2 mel 64 (n_fft 1024, hop 160)"
    assert [s for s in rows if s.startswith(setting)] == [
        f"{setting} -> Griffin-Lim",
        f"{setting} -> HiFi-GAN",
        f"{setting} -> VAE -> Griffin-Lim",
        f"{setting} -> VAE -> HiFi-GAN",
    ]
    # Without the (random) VAE the pipeline's mel inverts well in magnitude: a real property of the front-end.
    assert float(rows[f"{setting} -> Griffin-Lim"]["spectral_correlation"]) > 0.7
    assert float(rows[f"{setting} -> VAE -> Griffin-Lim"]["spectral_correlation"]) < 0.7  # untrained VAE
    assert (out / "chains_spectrograms.png").stat().st_size > 0
    assert f"| {setting} -> VAE -> HiFi-GAN |" in (out / "chains.md").read_text()


@pytest.mark.slow
def test_bad_model_folders_are_named(model_dir, tmp_path, capsys):
    assert evaluate.main(["--audioldm2-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path)]) == 2
    assert f"{tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err

    partial = tmp_path / "partial"
    (partial / "vae").mkdir(parents=True)
    (partial / "vae" / "config.json").write_text((model_dir / "vae" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="vocoder/config.json is missing"):
        check_model_dir(partial)

    broken = tmp_path / "broken"
    for part in ("vae", "vocoder"):
        (broken / part).mkdir(parents=True)
        for f in (model_dir / part).iterdir():
            (broken / part / f.name).write_bytes(f.read_bytes())
    (broken / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(FileNotFoundError, match=r"cannot load the AudioLDM2 vae from .*broken/vae"):
        AudioLDM2Codec.load(broken)


@pytest.mark.slow
def test_missing_extra_says_how_to_install(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    assert evaluate.main(["--audioldm2-dir", str(model_dir), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and ".[audioldm2]" in err, err
