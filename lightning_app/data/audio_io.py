"""Audio file reading and writing with errors that name the file and the problem.

soundfile (libsndfile) does the I/O; torchaudio resamples.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class AudioFileError(Exception):
    """A file that cannot be used, with the reason; str() reads 'path: reason'."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    frames: int
    channels: int
    subtype: str
    format: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def probe(path: str | os.PathLike) -> AudioInfo:
    """Header facts of an audio file; raises AudioFileError if it is not readable audio."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(path, "no such file")
    if path.stat().st_size == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's errors are RuntimeError/LibsndfileError
        raise AudioFileError(path, f"not a readable audio file ({exc})") from None
    if info.frames <= 0:
        raise AudioFileError(path, "contains no audio samples")
    return AudioInfo(str(path), int(info.samplerate), int(info.frames), int(info.channels),
                     str(info.subtype), str(info.format))


def check_samples(path: str | os.PathLike, audio: np.ndarray, allow_silence: bool = False) -> None:
    """Reject NaN/Inf and (unless allowed) all-zero audio."""
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioFileError(path, f"contains {bad} NaN/Inf sample(s)")
    if not allow_silence and not np.any(audio):
        raise AudioFileError(path, "is digital silence (every sample is zero)")


def read(path: str | os.PathLike, start: int = 0, frames: int = -1, allow_silence: bool = False) -> tuple[np.ndarray, int]:
    """(samples as float32 (frames, channels), sample_rate); checked for NaN/Inf and silence."""
    probe(path)
    try:
        audio, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioFileError(path, f"could not decode audio ({exc})") from None
    if audio.shape[0] == 0:
        raise AudioFileError(path, "contains no audio samples")
    check_samples(path, audio, allow_silence=allow_silence)
    return audio, int(sr)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,), averaging channels."""
    return audio.mean(axis=1) if audio.ndim == 2 else audio


def resample(audio: np.ndarray | torch.Tensor, orig_sr: int, new_sr: int) -> np.ndarray | torch.Tensor:
    """Band-limited resampling along the last axis (torchaudio's windowed sinc)."""
    if orig_sr == new_sr:
        return audio
    if isinstance(audio, np.ndarray):
        return AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), orig_sr, new_sr).numpy()
    return AF.resample(audio, orig_sr, new_sr)


def read_resampled(path: str | os.PathLike, file_rate: int, rate: int, first_frame: int = 0,
                   samples: int | None = None) -> np.ndarray:
    """Mono audio at ``rate`` from file frame ``first_frame`` on: ``samples`` of it (fewer where the file
    ends; the caller pads as it needs) or the rest of the file, reading only what that takes."""
    frames = -1 if samples is None else int(np.ceil(samples * file_rate / rate)) + 16  # + the resampler's taps
    audio, _ = read(path, start=first_frame, frames=frames, allow_silence=True)
    mono = resample(to_mono(audio), file_rate, rate)
    return mono if samples is None else mono[:samples]


CONTAINERS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def container_format(suffix: str) -> str:
    """soundfile's container name for a file suffix; ValueError for one we do not write."""
    if suffix.lower() not in CONTAINERS:
        raise ValueError(f"cannot write '{suffix}' files; use .wav, .flac or .ogg")
    return CONTAINERS[suffix.lower()]


def _format_for(path: Path) -> str:
    try:
        return container_format(path.suffix)
    except ValueError as exc:
        raise AudioFileError(path, str(exc)) from None


# Temporary files are named after who writes them, never after the output: a 255-byte output name
# must stay writable, and a file left by a killed writer must be recognisable as ours and as dead.
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_PARTIAL = re.compile(r"\.c2c-([0-9a-f]{8})-(\d+)-[0-9a-f]+\.partial")


def partial_name() -> str:
    """A hidden temporary file name of fixed length: this host, this process, a random part."""
    return f".c2c-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> int:
    """Remove the temporary files in ``folder`` that killed writers (SIGKILL, a crash) left; returns how many.

    Only those of this host whose process is gone: another process may be writing into the same folder
    right now (a second run, another Slurm array task), and a process id from another host cannot be
    checked from here, so those files are kept. A reused pid only keeps a stale file, never deletes a live one.
    """
    removed = 0
    for path in Path(folder).glob(".c2c-*.partial"):
        match = _PARTIAL.fullmatch(path.name)
        if match and match[1] == _HOST and not _alive(int(match[2])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def atomic_writer(path: str | os.PathLike, sample_rate: int, channels: int, subtype: str | None = None):
    """An open sf.SoundFile under a temporary name (``partial_name``) in the same folder, renamed to
    ``path`` only when the block exits cleanly: an interrupted write never leaves a half-written file
    under the final name."""
    path = Path(path)
    format_name = _format_for(path)
    if subtype is not None and not sf.check_format(format_name, subtype):  # never silently another format
        raise AudioFileError(path, f"a {format_name} file cannot hold {subtype} samples; it holds: "
                                   f"{', '.join(sf.available_subtypes(format_name))}")
    tmp = path.with_name(partial_name())
    try:
        with sf.SoundFile(str(tmp), "w", samplerate=sample_rate, channels=channels, subtype=subtype,
                          format=format_name) as f:
            yield f
        os.replace(tmp, path)  # same folder: atomic
    finally:
        tmp.unlink(missing_ok=True)


def write(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write (frames, channels) or (frames,) audio; to a temporary name first, then renamed."""
    audio = audio if audio.ndim == 2 else audio[:, None]
    with atomic_writer(path, sample_rate, audio.shape[1], subtype) as f:
        f.write(audio)


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """Audio files under a folder (recursive) or the file itself, sorted for a stable order; hidden
    temporary files (``.….partial``) are never taken for audio."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
