"""AudioLDM2's mel VAE and HiFi-GAN vocoder as reconstruction chains (optional extra:
pip install '.[audioldm2]').

The research ran waveform -> mel -> AudioLDM2 VAE encode/decode -> mel -> Griffin-Lim and lost almost
all waveform correlation. These chains split that path so the loss of each step shows up as its own row:

    mel -> Griffin-Lim                 the pipeline's own mel front-end, no VAE (mel + phase loss)
    mel -> HiFi-GAN                    the pipeline's vocoder instead of Griffin-Lim
    mel -> VAE -> Griffin-Lim          the research's chain
    mel -> VAE -> HiFi-GAN             what the generative pipeline itself does

The model comes from a local folder laid out like the published pipeline (``vae/`` with an AutoencoderKL,
``vocoder/`` with a SpeechT5HifiGan); nothing is downloaded. The mel front-end follows AudioLDM's:
16 kHz, 1024-point STFT with reflect padding of (n_fft - hop) / 2 and no centring, magnitude (not power)
through a Slaney mel filterbank up to Nyquist, natural log clamped at 1e-5, peak level 0.5. The hop,
the number of mels and the sample rate are read from the vocoder's config (160, 64, 16000 for AudioLDM2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
import torchaudio.transforms as T

from lightning_app.data.audio_io import resample
from lightning_app.evaluation.chains import Chain

N_FFT = 1024  # AudioLDM's STFT size; the vocoder config does not record it
LOG_FLOOR = 1e-5  # log(clamp(mel, 1e-5)), as the VAE and vocoder were trained on
PEAK_LEVEL = 0.5  # AudioLDM normalises every input to this peak before the mel
INSTALL_HINT = (
    "the AudioLDM2 chains need the optional extra: pip install -c constraints.txt -e '.[audioldm2]'"
)


def _fit(x: torch.Tensor, length: int, start_pad: int = 0) -> torch.Tensor:
    """``start_pad`` zeros in front, then zero-padded or cut to ``length`` samples."""
    return torch.nn.functional.pad(x, (start_pad, max(0, length - start_pad - len(x))))[:length]


def _require_libraries():
    try:
        from diffusers import AutoencoderKL
        from transformers import SpeechT5HifiGan
        from transformers.utils import logging as transformers_logging
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    transformers_logging.disable_progress_bar()  # a per-tensor loading bar, noise in a report's log
    return AutoencoderKL, SpeechT5HifiGan


def check_model_dir(model_dir: Path) -> Path:
    """The folder must hold vae/ and vocoder/ with their configs; says which part is missing."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise FileNotFoundError(f"AudioLDM2 model folder {model_dir} does not exist")
    for part in ("vae/config.json", "vocoder/config.json"):
        if not (model_dir / part).is_file():
            raise FileNotFoundError(
                f"{model_dir} is not an AudioLDM2 model folder: {part} is missing "
                "(expected the pipeline's layout: vae/, vocoder/, ...)"
            )
    return model_dir


@dataclass
class AudioLDM2Codec:
    """The VAE and vocoder of one AudioLDM2 folder, with the mel front-end they were trained on."""

    vae: torch.nn.Module
    vocoder: torch.nn.Module
    device: torch.device

    @classmethod
    def load(cls, model_dir: Path | str, device: str | torch.device = "cpu") -> AudioLDM2Codec:
        model_dir = check_model_dir(Path(model_dir))
        AutoencoderKL, SpeechT5HifiGan = _require_libraries()
        parts = {}
        # low_cpu_mem_usage=False: diffusers would otherwise ask for `accelerate`, which these small loads
        # do not need
        for name, loader, options in (
            ("vae", AutoencoderKL, {"low_cpu_mem_usage": False}),
            ("vocoder", SpeechT5HifiGan, {}),
        ):
            try:
                parts[name] = loader.from_pretrained(model_dir / name, local_files_only=True, **options)
            except (OSError, ValueError) as exc:
                raise FileNotFoundError(
                    f"cannot load the AudioLDM2 {name} from {model_dir / name}: {exc}"
                ) from exc
        device = torch.device(device)
        codec = cls(parts["vae"].to(device).eval(), parts["vocoder"].to(device).eval(), device)
        codec._check()
        return codec

    # ------------------------------------------------------------------ settings read from the configs
    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def hop(self) -> int:
        return math.prod(self.vocoder.config.upsample_rates)  # one mel frame becomes `hop` samples

    @property
    def n_mels(self) -> int:
        return int(self.vocoder.config.model_in_dim)

    @property
    def vae_stride(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _check(self) -> None:
        cfg = self.vae.config
        if cfg.in_channels != 1 or cfg.out_channels != 1:
            raise ValueError(
                f"AudioLDM2 VAE must map 1-channel mel images (config has {cfg.in_channels} -> "
                f"{cfg.out_channels} channels)"
            )
        if self.n_mels % self.vae_stride:
            raise ValueError(
                f"the vocoder's {self.n_mels} mels are not divisible by the VAE's stride {self.vae_stride}"
            )
        if self.hop > N_FFT:
            raise ValueError(f"vocoder hop {self.hop} exceeds the STFT size {N_FFT}")

    # ------------------------------------------------------------------ the steps
    @cached_property
    def _filterbank(self) -> torch.Tensor:
        return AF.melscale_fbanks(
            N_FFT // 2 + 1,
            0.0,
            self.sample_rate / 2,
            self.n_mels,
            self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )  # (freqs, mels)

    @cached_property
    def _inverse_mel(self) -> T.InverseMelScale:
        return T.InverseMelScale(
            N_FFT // 2 + 1,
            self.n_mels,
            self.sample_rate,
            f_min=0.0,
            f_max=self.sample_rate / 2,
            norm="slaney",
            mel_scale="slaney",
        )

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(N,) waveform -> (frames, n_mels) log-mel, N / hop frames (N a multiple of hop)."""
        pad = (N_FFT - self.hop) // 2
        padded = torch.nn.functional.pad(audio[None, None], (pad, pad), mode="reflect")[0, 0]
        spec = torch.stft(
            padded,
            N_FFT,
            self.hop,
            window=torch.hann_window(N_FFT, device=audio.device),
            center=False,
            return_complex=True,
        ).abs()
        mel = spec.T @ self._filterbank.to(audio.device)
        return torch.log(mel.clamp_min(LOG_FLOOR))

    @torch.no_grad()
    def vae_roundtrip(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(frames, mels) -> encode (latent mean) -> decode -> (frames, mels). The scaling factor cancels."""
        frames = log_mel.shape[0]
        extra = -frames % self.vae_stride
        image = torch.nn.functional.pad(log_mel.T, (0, extra), mode="replicate").T[None, None]
        latent = self.vae.encode(image.to(self.device)).latent_dist.mode()
        return self.vae.decode(latent).sample[0, 0, :frames].to(log_mel.device).float()

    @torch.no_grad()
    def vocode(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder(log_mel.to(self.device)[None]).reshape(-1).to(log_mel.device).float()

    def griffin_lim(self, log_mel: torch.Tensor, length: int, iterations: int = 64) -> torch.Tensor:
        magnitude = self._inverse_mel(log_mel.exp().T).clamp_min(0.0)
        torch.manual_seed(0)  # the same random start phase every run
        # Without a length, F frames give hop * (F - 1) samples, which keeps the re-analysis at F frames.
        wave = AF.griffinlim(
            magnitude,
            torch.hann_window(N_FFT),
            N_FFT,
            self.hop,
            N_FFT,
            power=1.0,
            n_iter=iterations,
            momentum=0.99,
            length=None,
            rand_init=True,
        )
        return _fit(
            wave, length, start_pad=self.hop // 2
        )  # centred frames sit hop/2 earlier than the front-end's

    # ------------------------------------------------------------------ chains
    def chain(self, use_vae: bool, vocoder: str, griffin_lim_iters: int = 64) -> Chain:
        """fn(audio, sample_rate) -> audio of the same length and level, through the chosen steps."""
        if vocoder not in ("griffin_lim", "hifigan"):
            raise ValueError(f"vocoder must be griffin_lim or hifigan, not {vocoder!r}")

        def run(audio: np.ndarray, sample_rate: int) -> np.ndarray:
            x = resample(
                torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), sample_rate, self.sample_rate
            )
            n = len(x)
            x = _fit(x, n + -n % self.hop)
            peak = float(x.abs().max())
            gain = PEAK_LEVEL / peak if peak > 0 else 1.0
            mel = self.log_mel(x * gain)
            if use_vae:
                mel = self.vae_roundtrip(mel)
            y = self.vocode(mel) if vocoder == "hifigan" else self.griffin_lim(mel, len(x), griffin_lim_iters)
            y = resample(_fit(y, n) / gain, self.sample_rate, sample_rate)
            return _fit(y, len(audio)).numpy()

        return run

    def chains(self, griffin_lim_iters: int = 64) -> list[tuple[str, Chain]]:
        setting = f"AudioLDM2 mel {self.n_mels} (n_fft {N_FFT}, hop {self.hop})"
        return [
            (f"{setting} -> Griffin-Lim", self.chain(False, "griffin_lim", griffin_lim_iters)),
            (f"{setting} -> HiFi-GAN", self.chain(False, "hifigan")),
            (f"{setting} -> VAE -> Griffin-Lim", self.chain(True, "griffin_lim", griffin_lim_iters)),
            (f"{setting} -> VAE -> HiFi-GAN", self.chain(True, "hifigan")),
        ]
