"""Files to restore: input lists, output plans, checks before any work, and safe block-by-block writing.

``restore_file`` writes to a temporary name beside the output and renames it only when the whole file is
done, so an interrupted or failed run never leaves a half-written output.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import math
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from lightning_app.data import audio_io
from lightning_app.restoring.engine import LEVEL_BLOCK_SECONDS, Restorer, sum_of_squares

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- files
def expand_input_lists(inputs: list[str]) -> list[str]:
    """A .txt input is a list of audio files or folders, one per line (relative to the list's folder;
    blank lines and lines starting with # are skipped): the way to give names with spaces, or thousands."""
    expanded = []
    for item in inputs:
        if Path(item).suffix.lower() == ".txt" and Path(item).is_file():
            base = Path(item).parent
            lines = (line.strip() for line in Path(item).read_text().splitlines())
            expanded += [str(base / line) for line in lines if line and not line.startswith("#")]
        else:
            expanded.append(item)
    return expanded


def plan_outputs(inputs: list[str], output_dir: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs of files, folders and .txt lists of them. Folders keep their layout under
    output_dir; files go to its top."""
    pairs: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for item in expand_input_lists(inputs):
        path = Path(item)
        if path.is_dir():
            files = audio_io.find_audio_files(path, dangling=True)  # reported as a missing file is
            if not files:
                log.warning("%s: folder holds no .wav/.flac/.ogg files", path)
            found = [(f, output_dir / f.relative_to(path)) for f in files]
        else:
            found = [(path, output_dir / path.name)]
        for src, dst in found:  # the same file reached twice (listed again, or inside a listed folder): once
            key = src.resolve()
            if key in seen:
                log.info("%s: given more than once; restored once", src)
                continue
            seen.add(key)
            pairs.append((src, dst))
    return pairs


def check_output_dir(output_dir: Path) -> None:
    """The output folder, or its nearest existing parent, must be a folder (ValueError otherwise)."""
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--output-dir {output_dir}: {existing} is a file, not a folder")


def check_subtype(subtype: str | None, pairs: list[tuple[Path, Path]]) -> None:
    """--subtype must be a sample format every planned output's container can hold (ValueError otherwise)."""
    if subtype is None:
        return
    if subtype not in sf.available_subtypes():
        raise ValueError(f"--subtype {subtype} is not a sample format; e.g. PCM_16, PCM_24, FLOAT")
    for suffix in sorted({dst.suffix.lower() for _, dst in pairs} & set(audio_io.CONTAINERS)):
        container = audio_io.container_format(suffix)
        if not sf.check_format(container, subtype):
            valid = ", ".join(sf.available_subtypes(container))
            raise ValueError(
                f"--subtype {subtype} cannot be written to {suffix} files; {container} holds: {valid}"
            )


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


def _scan(path: Path, f: sf.SoundFile, block: int, to_signals) -> np.ndarray:
    """First pass over a file: mean square of each processed signal, added up in blocks of ``block`` frames as
    ``Restorer.mean_squares`` does; NaN/Inf and silence are errors."""
    total = 0.0
    f.seek(0)
    for start in range(0, f.frames, block):
        data = f.read(min(block, f.frames - start), dtype="float64", always_2d=True)
        signals = to_signals(data)
        squares = sum_of_squares(signals)
        if not np.all(np.isfinite(squares)):  # a NaN or Inf sample makes its signal's sum one
            at = start + int(np.argwhere(~np.isfinite(data))[0, 0])
            raise audio_io.AudioFileError(
                path, f"contains NaN/Inf samples (first at {at / f.samplerate:.2f} s)"
            )
        total = total + squares
    if not np.any(total):
        raise audio_io.AudioFileError(path, "is digital silence (every sample is zero)")
    return total / f.frames


# glibc's malloc defaults suit the block loop badly: a buffer above its mmap threshold (which rises only as
# such buffers are freed, up to 32 MiB) is mapped and unmapped each time, and the heap is trimmed whenever
# its top is free, so every forward pass faults its activations in afresh, at a cost in system time that grows
# with the file. Every block needs the same sizes again, so keeping freed memory for reuse costs little at
# the peak and removes most of those faults; the memory goes back after each file, the settings stay for
# the process. Elsewhere than glibc: no-ops.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def _glibc():
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def _reuse_freed_memory(until: ExitStack) -> None:
    """Keep freed memory for reuse until ``until`` closes, then hand it back."""
    if libc := _glibc():
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest; setting it also stops the adjustments
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        until.callback(libc.malloc_trim, 0)


def _over_full_scale(audio: np.ndarray) -> tuple[int, float]:
    """(samples beyond ±1.0, peak magnitude) of a block."""
    return int(np.count_nonzero(np.abs(audio) > 1.0)), float(np.max(np.abs(audio), initial=0.0))


def restore_file(
    restorer: Restorer,
    src: Path,
    dst: Path,
    residual: Path | None = None,
    subtype: str | None = None,
    progress: bool = False,
) -> tuple[float, int]:
    """Denoise one file block by block (memory bounded by the block, not the file).

    Returns (seconds of audio, samples clipped in ``dst``). An integer sample format cannot hold samples
    over full scale: they are clipped, and each written file that clipped gets a warning with the count.
    The output's folder is made only once the input has been read through and found usable, and the
    folders made for it are removed again if the file fails: a refused file leaves nothing behind.
    """
    info = audio_io.probe(src)
    subtype = subtype or info.subtype
    clip = "FLOAT" not in subtype and "DOUBLE" not in subtype  # integer formats cannot hold overs
    targets = [dst] + ([residual] if residual else [])
    overs = {path: (0, 0.0) for path in targets}  # (samples over full scale, peak)
    with sf.SoundFile(str(src)) as f, ExitStack() as outputs:
        _reuse_freed_memory(until=outputs)
        rate, frames = f.samplerate, f.frames
        restorer.reset_guard()
        gains = restorer.levels(_scan(src, f, LEVEL_BLOCK_SECONDS * rate, restorer.to_signals))
        if cut := audio_io.truncation(src):
            log.warning("%s: %s; the output is as long as what is there", src, cut)
        if restorer.channel_mode == "mid_side" and f.channels != 2:
            log.warning(
                "%s: --channels mid-side needs two channels; its %d channel(s) are denoised one by one",
                src,
                f.channels,
            )

        def read(start: int, stop: int) -> np.ndarray:
            f.seek(start)
            return f.read(stop - start, dtype="float64", always_2d=True)

        outputs.enter_context(made_folder(dst.parent))
        writers = [
            outputs.enter_context(audio_io.atomic_writer(path, rate, f.channels, subtype)) for path in targets
        ]
        carry: dict = {}  # model outputs one block hands to the next
        with tqdm(total=frames / rate, unit="s", desc=src.name, disable=not progress, leave=False) as bar:
            for block in restorer.plan(frames, rate):
                restored, original = restorer.process_block(read, frames, rate, block, gains, carry=carry)
                blocks = (restored, original - restored) if residual else (restored,)
                for path, writer, audio in zip(targets, writers, blocks, strict=True):
                    if clip:
                        count, peak = _over_full_scale(audio)
                        overs[path] = (overs[path][0] + count, max(overs[path][1], peak))
                        audio = np.clip(audio, -1.0, 1.0)
                    audio_io.write_block(writer, path, audio)
                bar.update((block[1] - block[0]) / rate)
    for path, (count, peak) in overs.items():
        if count:
            keep = (
                "; --subtype FLOAT keeps them"
                if sf.check_format(audio_io.container_format(path.suffix), "FLOAT")
                else ""
            )
            log.warning(
                "%s: %d samples over full scale clipped (peak %+.1f dBFS)%s",
                path,
                count,
                20 * math.log10(peak),
                keep,
            )
    return info.seconds, overs[dst][0]


@contextmanager
def made_folder(folder: Path):
    """``folder`` made (with its missing parents); those made here are removed again, if still empty,
    when the block fails or is interrupted."""
    missing = []
    at = folder
    while not at.exists() and at != at.parent:
        missing.append(at)
        at = at.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:  # not empty (another file's output is there) or gone: keep going up no further
                break
        raise


NAME_MAX = 255  # bytes in one file name on the common file systems (ext4, XFS, NTFS, APFS)


def residual_path(dst: Path) -> Path:
    """NAME.residual.EXT beside the output; where that name would be too long for the file system, the
    stem is cut (on a character boundary) and a hash of the whole stem keeps it unique."""
    name = f"{dst.stem}.residual{dst.suffix}"
    if len(name.encode()) <= NAME_MAX:
        return dst.with_name(name)
    tag = "~" + hashlib.sha1(dst.stem.encode()).hexdigest()[:8]
    room = NAME_MAX - len(f"{tag}.residual{dst.suffix}".encode())
    stem = dst.stem.encode()[:room].decode(errors="ignore")
    return dst.with_name(f"{stem}{tag}.residual{dst.suffix}")
