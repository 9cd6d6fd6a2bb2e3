"""Restore real recordings with a trained checkpoint.

    python -m lightning_app.denoise INPUTS... --checkpoint CKPT --output-dir DIR [--mix M]

INPUTS are wav/flac/ogg files or folders of them (searched recursively; the folder's
layout is kept under DIR). Every output has its input's file name, sample rate, channel
count and sample format. Inputs are never overwritten, nor existing outputs unless
--overwrite; each output is written under a temporary name and renamed when complete.
A bad file is reported with its name and the reason, the others are still done, and the
exit status is 1 if anything failed.

--mix blends denoised and original: 1.0 is fully denoised; the research's remedy for an
over-suppressing model was --mix 0.3 (0.3 denoised + 0.7 original).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lightning_app.data import audio_io
from lightning_app.systems import DenoiseSystem, system_class

log = logging.getLogger("lightning_app.denoise")


# ----------------------------------------------------------------------------- model
def load_system(checkpoint: str | Path, device: str | torch.device = "cpu") -> DenoiseSystem:
    """The trained system from a Lightning checkpoint, in eval mode (loads with weights_only=True)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{checkpoint}: not a readable checkpoint ({exc})") from None
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt or "system_kind" not in ckpt:
        raise ValueError(f"{checkpoint}: not a c2c-denoise checkpoint (missing state_dict/hyper_parameters/system_kind)")
    system = system_class(ckpt["system_kind"])(**ckpt["hyper_parameters"])
    system.load_state_dict(ckpt["state_dict"])
    return system.to(device).eval()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available")
    return torch.device(name)


# ----------------------------------------------------------------------------- signal path
def crossfade_windows(length: int, chunk: int, overlap: int) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """(padded length, [(start, weight)]) for chunks on a regular grid; weights sum to 1 everywhere.

    Neighbouring chunks overlap by exactly ``overlap`` samples with complementary sin^2/cos^2
    fades. The first chunk's start and the last chunk's end have no fade, so nothing is ever
    divided by a near-zero window; the signal is zero-padded at the end to fill the grid.
    """
    if length <= chunk:
        return length, [(0, np.ones(length))]
    step = chunk - overlap
    count = 1 + math.ceil((length - chunk) / step)
    fade_in = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / max(overlap, 1)) ** 2
    windows = []
    for i in range(count):
        w = np.ones(chunk)
        if i > 0 and overlap:
            w[:overlap] = fade_in
        if i < count - 1 and overlap:
            w[chunk - overlap:] = 1.0 - fade_in
        windows.append((i * step, w))
    return (count - 1) * step + chunk, windows


@torch.no_grad()
def enhance_mono(system: DenoiseSystem, audio: np.ndarray, chunk: int, overlap: int, batch_size: int = 8) -> np.ndarray:
    """Denoise one channel at the model's rate in cross-faded chunks (bounded model memory)."""
    device = next(system.parameters()).device
    padded_length, windows = crossfade_windows(len(audio), chunk, overlap)
    padded = np.pad(audio.astype(np.float32), (0, padded_length - len(audio)))
    out = np.zeros(padded_length, dtype=np.float64)
    for b in range(0, len(windows), batch_size):
        group = windows[b : b + batch_size]
        pieces = np.stack([padded[s : s + len(w)] for s, w in group])
        enhanced = system.enhance(torch.from_numpy(pieces).unsqueeze(1).to(device)).float().cpu().numpy()[:, 0]
        for (s, w), piece in zip(group, enhanced, strict=True):
            out[s : s + len(w)] += w * piece
    return out[: len(audio)]


# Model input level: the median RMS of the default training mixtures (measured: -29.7 dBFS).
TARGET_RMS_DBFS = -30.0


@dataclass
class Restorer:
    """Turns (frames, channels) audio at any rate into denoised audio of the same shape and rate.

    Each channel is brought to the level the model was trained at with one gain for the whole
    channel (never per chunk, which would make level jumps between chunks), and the gain is
    undone afterwards, so a quiet transfer is denoised like a loud one.
    """

    system: DenoiseSystem
    mix: float = 1.0
    chunk_seconds: float = 10.0
    overlap_seconds: float = 0.5
    batch_size: int = 8
    normalise: bool = True

    def __post_init__(self):
        if not 0.0 <= self.mix <= 1.0:
            raise ValueError(f"--mix must be between 0 and 1, got {self.mix}")
        self.model_rate = int(self.system.sample_rate)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        chunk = max(int(self.chunk_seconds * self.model_rate), 1)
        overlap = min(int(self.overlap_seconds * self.model_rate), chunk // 2)
        out = np.empty_like(audio, dtype=np.float32)
        for ch in range(audio.shape[1]):
            original = audio[:, ch].astype(np.float32)
            at_model_rate = audio_io.resample(original, sample_rate, self.model_rate)
            gain = self._gain(at_model_rate)
            denoised = enhance_mono(self.system, at_model_rate * gain, chunk, overlap, self.batch_size) / gain
            back = audio_io.resample(denoised.astype(np.float32), self.model_rate, sample_rate)
            back = np.pad(back, (0, max(0, len(original) - len(back))))[: len(original)]
            out[:, ch] = self.mix * back + (1.0 - self.mix) * original
        return out

    def _gain(self, audio: np.ndarray) -> float:
        level = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if not self.normalise or level < 1e-7:
            return 1.0
        return 10 ** (TARGET_RMS_DBFS / 20) / level


# ----------------------------------------------------------------------------- files
def plan_outputs(inputs: list[str], output_dir: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs. Folders keep their layout under output_dir; files go to its top."""
    pairs: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = audio_io.find_audio_files(path)
            if not files:
                log.warning("%s: folder holds no .wav/.flac/.ogg files", path)
            pairs += [(f, output_dir / f.relative_to(path)) for f in files]
        else:
            pairs.append((path, output_dir / path.name))
    return pairs


def check_plan(pairs: list[tuple[Path, Path]], overwrite: bool) -> dict[Path, str]:
    """Reasons to refuse a pair before any work: an output that is an input, collisions, existing files."""
    inputs = {p.resolve() for p, _ in pairs if p.exists()}
    refused: dict[Path, str] = {}
    claimed: dict[Path, Path] = {}
    for src, dst in pairs:
        target = dst.resolve()
        if target in inputs:
            refused[src] = f"its output {dst} would overwrite an input file; choose another --output-dir"
        elif target in claimed:
            refused[src] = f"its output {dst} is also the output of {claimed[target]}"
        elif dst.exists() and not overwrite:
            refused[src] = f"output {dst} already exists (use --overwrite to replace it)"
        else:
            claimed[target] = src
    return refused


def restore_file(restorer: Restorer, src: Path, dst: Path) -> float:
    """Denoise one file; returns the audio duration in seconds."""
    info = audio_io.probe(src)
    audio, sr = audio_io.read(src)
    out = restorer(audio, sr)
    if "FLOAT" not in info.subtype and "DOUBLE" not in info.subtype:
        out = np.clip(out, -1.0, 1.0)  # integer formats cannot hold overs
    dst.parent.mkdir(parents=True, exist_ok=True)
    audio_io.write(dst, out, sr, subtype=info.subtype)
    return info.seconds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lightning_app.denoise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="audio files or folders of them")
    p.add_argument("--checkpoint", required=True, help="a .ckpt from runs/<experiment>/<version>/checkpoints/")
    p.add_argument("--output-dir", required=True, help="where the restored files go (created if needed)")
    p.add_argument("--mix", type=float, default=1.0, help="share of the denoised signal, 0..1 (default 1.0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="model input length per chunk")
    p.add_argument("--batch-size", type=int, default=8, help="chunks per forward pass")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        system = load_system(args.checkpoint, device)
        restorer = Restorer(system, mix=args.mix, chunk_seconds=args.chunk_seconds, batch_size=args.batch_size)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output_dir = Path(args.output_dir)
    pairs = plan_outputs(args.inputs, output_dir)
    if not pairs:
        print("error: no audio files found in the given inputs", file=sys.stderr)
        return 2
    refused = check_plan(pairs, args.overwrite)
    failures = dict(refused)
    audio_seconds = compute_seconds = 0.0
    for src, dst in pairs:
        if src in refused:
            continue
        start = time.perf_counter()
        try:
            seconds = restore_file(restorer, src, dst)
        except audio_io.AudioFileError as exc:
            failures[src] = exc.reason
            continue
        except Exception as exc:  # keep going: one bad file must not cost the rest of the batch
            failures[src] = f"{type(exc).__name__}: {exc}"
            continue
        took = time.perf_counter() - start
        audio_seconds += seconds
        compute_seconds += took
        log.info("restored %s -> %s (%.1f s of audio in %.1f s, mix %.2f, model rate %d Hz)",
                 src, dst, seconds, took, args.mix, restorer.model_rate)
    for src, reason in failures.items():
        print(f"FAILED {src}: {reason}", file=sys.stderr)
    done = len(pairs) - len(failures)
    rtf = compute_seconds / audio_seconds if audio_seconds else math.nan
    print(f"{done} of {len(pairs)} file(s) restored into {output_dir}; real-time factor {rtf:.3f} "
          f"(seconds of compute per second of audio)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
