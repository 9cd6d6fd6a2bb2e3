"""Audio file reading and writing with errors that name the file and the problem.

soundfile (libsndfile) does the I/O; torchaudio resamples for training and evaluation (imported there only:
the restore engine resamples in numpy, and the light install has no torch).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import soundfile as sf

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")

log = logging.getLogger(__name__)


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
        if path.is_symlink() and not path.exists():
            raise AudioFileError(path, f"a link to {os.readlink(path)}, which does not exist")
        raise AudioFileError(path, "a folder, not an audio file" if path.is_dir() else "no such file")
    if path.stat().st_size == 0:
        raise AudioFileError(path, "empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's errors are RuntimeError/LibsndfileError
        raise AudioFileError(path, f"not a readable audio file ({exc})") from None
    if info.frames <= 0:
        raise AudioFileError(path, "contains no audio samples")
    return AudioInfo(
        str(path),
        int(info.samplerate),
        int(info.frames),
        int(info.channels),
        str(info.subtype),
        str(info.format),
    )


_DATA_CHUNK = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def truncation(path: str | os.PathLike) -> str | None:
    """How much of a WAV file's audio its header promises and the file lacks (a cut-off copy or transfer),
    or None: libsndfile reads what is there and says so only in its log."""
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    match = _DATA_CHUNK.search(info.extra_info or "")
    if not match or int(match[2]) >= int(match[1]):
        return None
    promised = info.frames * int(match[1]) / max(int(match[2]), 1) / info.samplerate
    return f"truncated: its header promises {promised:.2f} s, the file holds {info.duration:.2f} s"


def check_samples(path: str | os.PathLike, audio: np.ndarray, allow_silence: bool = False) -> None:
    """Reject NaN/Inf and (unless allowed) all-zero audio."""
    if not np.all(np.isfinite(audio)):
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise AudioFileError(path, f"contains {bad} NaN/Inf sample(s)")
    if not allow_silence and not np.any(audio):
        raise AudioFileError(path, "is digital silence (every sample is zero)")


def read(
    path: str | os.PathLike, start: int = 0, frames: int = -1, allow_silence: bool = False
) -> tuple[np.ndarray, int]:
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


def resample(audio, orig_sr: int, new_sr: int):
    """Band-limited resampling along the last axis (torchaudio's windowed sinc) of a numpy array or a
    tensor, giving the same kind."""
    if orig_sr == new_sr:
        return audio
    import torch
    import torchaudio.functional as AF

    if isinstance(audio, np.ndarray):
        return AF.resample(torch.from_numpy(np.ascontiguousarray(audio)), orig_sr, new_sr).numpy()
    return AF.resample(audio, orig_sr, new_sr)


def read_resampled(
    path: str | os.PathLike, file_rate: int, rate: int, first_frame: int = 0, samples: int | None = None
) -> np.ndarray:
    """Mono audio at ``rate`` from file frame ``first_frame`` on: ``samples`` of it (fewer where the file
    ends; the caller pads as it needs) or the rest of the file, reading only what that takes."""
    frames = (
        -1 if samples is None else int(np.ceil(samples * file_rate / rate)) + 16
    )  # + the resampler's taps
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
    checked from here, so those files are kept. A reused pid only keeps a stale file, never deletes a live
    one.
    """
    removed = 0
    for path in Path(folder).glob(".c2c-*.partial"):
        match = _PARTIAL.fullmatch(path.name)
        if match and match[1] == _HOST and not _alive(int(match[2])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# Below this much free space a failed write is taken for a full disk: libsndfile reports ENOSPC only as
# "System error." (a write fails once the last free block is used, so what is left is less than a block).
_NEARLY_FULL_BYTES = 1 << 20
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EIO: "input/output error",
}


def write_error(path: str | os.PathLike, exc: BaseException) -> AudioFileError:
    """A failed write as 'path: <the cause> (<folder>)', the cause from errno or, for libsndfile's
    errors, which carry none, from the folder's free space."""
    folder = Path(path).parent
    code = getattr(exc, "errno", None)
    if code is None and isinstance(exc, sf.LibsndfileError):
        try:
            code = errno.ENOSPC if shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES else None
        except OSError:
            code = None
    if code in _WRITE_ERRORS:
        return AudioFileError(path, f"could not be written: {_WRITE_ERRORS[code]} ({folder})")
    return AudioFileError(path, f"could not be written ({exc})")


@contextmanager
def atomic_writer(path: str | os.PathLike, sample_rate: int, channels: int, subtype: str | None = None):
    """An open sf.SoundFile under a temporary name (``partial_name``) in the same folder, renamed to
    ``path`` only when the block exits cleanly: an interrupted write never leaves a half-written file
    under the final name. Failures of the file itself (a full disk) are AudioFileErrors naming the cause."""
    path = Path(path)
    format_name = _format_for(path)
    if subtype is not None and not sf.check_format(format_name, subtype):  # never silently another format
        raise AudioFileError(
            path,
            f"a {format_name} file cannot hold {subtype} samples; it holds: "
            f"{', '.join(sf.available_subtypes(format_name))}",
        )
    tmp = path.with_name(partial_name())
    f = None
    try:
        try:
            f = sf.SoundFile(
                str(tmp), "w", samplerate=sample_rate, channels=channels, subtype=subtype, format=format_name
            )
        except (sf.LibsndfileError, OSError) as exc:
            raise write_error(path, exc) from None
        yield f
        try:
            f.close()  # writes the header: it may fail on a full disk as well
            os.replace(tmp, path)  # same folder: atomic
        except (sf.LibsndfileError, OSError) as exc:
            raise write_error(path, exc) from None
    finally:
        if f is not None and not f.closed:
            try:
                f.close()
            except (sf.LibsndfileError, OSError):
                pass  # the file is removed next; the first error is the one reported
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_text(path: str | os.PathLike, newline: str | None = None) -> Iterator[TextIO]:
    """A text file (UTF-8) open under a temporary name (``partial_name``) in ``path``'s folder, renamed over
    ``path`` only when the block exits cleanly. A reader finds the old file or the new one, whole, never half
    of one (a run's config.yaml that a resuming multi-node run rewrites while other ranks read it, a table
    that workers finishing together each rewrite); after an error the old file is left as it was. The text
    files of the suite and its audio files are kept safe the same way, in this one module."""
    path = Path(path)
    tmp = path.with_name(partial_name())
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            yield f
        os.replace(tmp, path)  # same folder: atomic
    finally:
        tmp.unlink(missing_ok=True)


def write_block(writer: sf.SoundFile, path: str | os.PathLike, audio: np.ndarray) -> None:
    """``writer.write(audio)``, a failure named as ``write_error`` names it (``path`` is the final name)."""
    try:
        writer.write(audio)
    except (sf.LibsndfileError, OSError) as exc:
        raise write_error(path, exc) from None


def write(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write (frames, channels) or (frames,) audio; to a temporary name first, then renamed."""
    audio = audio if audio.ndim == 2 else audio[:, None]
    with atomic_writer(path, sample_rate, audio.shape[1], subtype) as f:
        write_block(f, path, audio)


def find_audio_files(root: str | os.PathLike, dangling: bool = False) -> list[Path]:
    """Audio files under a folder (recursive) or the file itself, sorted for a stable order; hidden
    temporary files (``.….partial``) are never taken for audio.

    Linked sub-folders are followed, each real folder once (a link back up the tree would loop; a link to
    a folder already searched would find its files twice): the skipped ones are logged. ``dangling``:
    also list audio-named links whose target is gone, so the caller reports them as it reports a missing
    file given by name (otherwise they are logged and left out)."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    found, seen = [], set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            log.info("%s: a link to %s, which is searched already; skipped", folder, real)
            subfolders.clear()
            continue
        seen.add(real)
        for name in names:
            path = Path(folder, name)
            if path.suffix.lower() not in AUDIO_SUFFIXES:
                continue
            if path.is_file() or dangling:
                found.append(path)
            elif path.is_symlink():
                log.warning("%s: a link to %s, which does not exist; skipped", path, os.readlink(path))
    return sorted(found)
