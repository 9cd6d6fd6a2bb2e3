"""The corpus of real recordings: assembled from Debian packages, described by a manifest, split by source.

``build_corpus`` downloads each package of ``configs/corpus.yaml`` with ``apt-get download`` (or takes
its .deb from a folder), unpacks it with ``dpkg-deb``, and writes the matching recordings as mono FLAC
at one rate into ``ROOT/<split>/<content>/<package>/``; ``ROOT/manifest.csv`` lists every file with its
source package, licence, content, group, split, duration and rate. Groups (a music track, a speaker)
decide the split, so nothing heard in training is heard again in validation or test.
The command line over this module is ``lightning_app.corpus`` (``make corpus``).
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import OmegaConf

from lightning_app.data import audio_io

log = logging.getLogger(__name__)

DEFAULT_SPEC = Path(__file__).resolve().parents[2] / "configs" / "corpus.yaml"
DEFAULT_ROOT = Path("data/real")
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = (
    "file",
    "split",
    "content",
    "package",
    "licence",
    "group",
    "seconds",
    "sample_rate",
    "sources",
)
SPLITS = ("train", "val", "test")
CONTENTS = ("speech", "music")
BUILD_COMMAND = "make corpus"
# Ends of a recording quieter than this, relative to its peak, are trimmed (studio silence, fades to nothing).
TRIM_DB = -50.0


class CorpusError(Exception):
    """A corpus that cannot be built or read; the message is one line naming the thing and the fix."""


@dataclass(frozen=True)
class PackageSpec:
    name: str
    content: str
    licence: str
    files: tuple[str, ...]
    group: str
    style: str = ""
    group_scope: str | None = None

    def group_of(self, relative: str) -> str:
        """The group (track or speaker) a file of this package belongs to, in its scope."""
        match = re.search(self.group, relative)
        if match is None:
            raise CorpusError(f"{self.name}: its group pattern {self.group!r} does not match {relative}")
        name = match.group(1) if match.groups() else match.group(0)
        return f"{self.group_scope or self.name}:{name}"


@dataclass(frozen=True)
class CorpusSpec:
    packages: tuple[PackageSpec, ...]
    reserved: tuple[str, ...] = ()
    sample_rate: int = 44100
    splits: dict = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})
    min_seconds: float = 0.3
    speech_file_seconds: float = 20.0


def load_spec(path: str | os.PathLike = DEFAULT_SPEC, only: list[str] | None = None) -> CorpusSpec:
    """The corpus description; CorpusError for a reserved or unknown package, or a bad entry."""
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    reserved = tuple(raw.get("reserved", ()))
    packages = []
    for name, entry in (raw.get("packages") or {}).items():
        check_not_reserved(name, reserved)
        if entry.get("content") not in CONTENTS:
            raise CorpusError(
                f"{path}: package {name}: content must be one of {CONTENTS}, got {entry.get('content')!r}"
            )
        if not entry.get("licence"):
            raise CorpusError(f"{path}: package {name} names no licence; every source must say its licence")
        packages.append(
            PackageSpec(
                name=name,
                content=entry["content"],
                licence=entry["licence"],
                files=tuple(entry["files"]),
                group=entry.get("group", "([^/]+)$"),
                style=entry.get("style", ""),
                group_scope=entry.get("group_scope"),
            )
        )
    if only:
        for name in only:
            check_not_reserved(name, reserved)
        unknown = set(only) - {p.name for p in packages}
        if unknown:
            raise CorpusError(
                f"{path} has no package {', '.join(sorted(unknown))}; it has: "
                f"{', '.join(p.name for p in packages)}"
            )
        packages = [p for p in packages if p.name in only]
    splits = dict(raw.get("splits", {"train": 0.7, "val": 0.15, "test": 0.15}))
    if set(splits) != set(SPLITS) or abs(sum(splits.values()) - 1.0) > 1e-6:
        raise CorpusError(
            f"{path}: splits must give shares of {', '.join(SPLITS)} that add up to 1, got {splits}"
        )
    return CorpusSpec(
        packages=tuple(packages),
        reserved=reserved,
        sample_rate=int(raw.get("sample_rate", 44100)),
        splits=splits,
        min_seconds=float(raw.get("min_seconds", 0.3)),
        speech_file_seconds=float(raw.get("speech_file_seconds", 20.0)),
    )


def check_not_reserved(name: str, reserved) -> None:
    for pattern in reserved:
        if fnmatch.fnmatch(name, pattern):
            raise CorpusError(
                f"{name} is reserved for independent evaluation (matches {pattern!r}): never "
                "train, tune or test on it"
            )


def assign_splits(durations: dict[str, float], shares: dict[str, float]) -> dict[str, str]:
    """The split of every group, given each group's seconds: groups in the order of a hash of their names,
    each to the split furthest below its share of the seconds so far. A pure function of the groups, and
    balanced by duration even when there are only a few dozen speakers (a hash alone left one in val)."""
    order = sorted(durations, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    held = dict.fromkeys(SPLITS, 0.0)
    assigned = {}
    for group in order:
        total = sum(held.values()) + durations[group]
        split = max(SPLITS, key=lambda s: (shares[s] * total - held[s], -SPLITS.index(s)))
        assigned[group] = split
        held[split] += durations[group]
    return assigned


# ----------------------------------------------------------------------------- packages
def fetch_package(name: str, packages_dir: Path) -> Path:
    """The package's .deb in ``packages_dir``: one already there, or downloaded with apt-get download."""
    found = sorted(packages_dir.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise CorpusError(
            f"{name}: no {name}_*.deb in {packages_dir} and no apt-get to download it; put the .deb "
            f"there (apt-get download {name} on a Debian machine)"
        )
    packages_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", name], cwd=packages_dir, capture_output=True, text=True)
    found = sorted(packages_dir.glob(f"{name}_*.deb"))
    if result.returncode != 0 or not found:
        reason = (result.stderr.strip().splitlines() or ["no .deb appeared"])[-1]
        raise CorpusError(
            f"{name}: apt-get download failed ({reason}); run `apt-get update` first, or put "
            f"{name}_*.deb in {packages_dir}"
        )
    return found[-1]


def unpack(deb: Path, into: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        raise CorpusError(f"{deb}: dpkg-deb is needed to unpack it (Debian's dpkg package)")
    result = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
    if result.returncode != 0:
        raise CorpusError(f"{deb}: not a Debian package dpkg-deb can unpack ({result.stderr.strip()[:200]})")


def matching_files(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    files = {Path(p) for pattern in patterns for p in glob.glob(str(root / pattern), recursive=True)}
    return sorted(p for p in files if p.is_file() and not p.is_symlink())


# ----------------------------------------------------------------------------- audio
def load_mono(path: Path, rate: int) -> np.ndarray | None:
    """The recording as mono float32 at ``rate`` with quiet ends trimmed; None if unreadable or silent."""
    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors: logged by name and left out
        log.warning("%s: left out, not readable audio (%s)", path.name, exc)
        return None
    mono = audio_io.to_mono(audio)
    if len(mono) == 0 or not np.all(np.isfinite(mono)) or not np.any(mono):
        return None
    mono = trim(mono, file_rate)
    return audio_io.resample(mono, file_rate, rate).astype(np.float32)


def trim(audio: np.ndarray, rate: int, hop_seconds: float = 0.01) -> np.ndarray:
    """The audio between its first and last 10-ms frame within TRIM_DB of the peak frame."""
    hop = max(1, int(rate * hop_seconds))
    frames = len(audio) // hop
    if frames < 2:
        return audio
    power = np.mean(np.square(audio[: frames * hop].reshape(frames, hop)), axis=1)
    loud = np.flatnonzero(power > power.max() * 10 ** (TRIM_DB / 10))
    return audio[loud[0] * hop : (loud[-1] + 1) * hop]


def join_utterances(
    items: list[np.ndarray], rate: int, seconds: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Short spoken items of one speaker joined into files of about ``seconds``, with pauses of 0.2-0.7 s."""
    files, current, length = [], [], 0
    for item in items:
        pause = np.zeros(int(rng.uniform(0.2, 0.7) * rate), dtype=np.float32)
        current += [item, pause]
        length += len(item) + len(pause)
        if length >= seconds * rate:
            files.append(np.concatenate(current[:-1]))
            current, length = [], 0
    if current:
        files.append(np.concatenate(current[:-1]))
    return files


def _fit(audio: np.ndarray) -> np.ndarray:
    """Peak below full scale for 16-bit FLAC (mixdowns of loud stereo can exceed it)."""
    peak = float(np.max(np.abs(audio)))
    return audio * (0.99 / peak) if peak > 0.99 else audio


# ----------------------------------------------------------------------------- building
def build_corpus(spec: CorpusSpec, root: Path = DEFAULT_ROOT, packages_dir: Path | None = None) -> list[dict]:
    """Assemble the corpus into ``root`` (replaced only when complete); returns the manifest rows."""
    root = Path(root)
    packages_dir = Path(packages_dir) if packages_dir else root.parent / "packages"
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}-", suffix=".partial", dir=root.parent))
    try:
        debs = {
            package.name: fetch_package(package.name, packages_dir) for package in spec.packages
        }  # all, first
        rows = []
        for package in spec.packages:
            rows += _build_package(package, debs[package.name], spec, partial)
        if not rows:
            raise CorpusError(
                f"no recordings found in {', '.join(debs)}: check the file patterns of the spec"
            )
        for content in CONTENTS:
            durations: dict[str, float] = {}
            for row in rows:
                if row["content"] == content:
                    durations[row["group"]] = durations.get(row["group"], 0.0) + float(row["seconds"])
            splits = assign_splits(durations, spec.splits)
            for row in rows:
                if row["content"] == content:
                    row["split"] = splits[row["group"]]
                    target = partial / row["split"] / row["file"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(partial / row["file"], target)
                    row["file"] = target.relative_to(partial).as_posix()
        for content in CONTENTS:
            shutil.rmtree(partial / content, ignore_errors=True)
        _write_manifest(partial / MANIFEST, rows)
        old = root.with_name(f".{root.name}.old")
        if root.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(root, old)
        os.replace(partial, root)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return rows


def _build_package(package: PackageSpec, deb: Path, spec: CorpusSpec, out: Path) -> list[dict]:
    """The package's recordings written to out/<content>/<package>/; rows without their split yet."""
    rate = spec.sample_rate
    rows = []
    with tempfile.TemporaryDirectory(prefix=f"{package.name}-") as tmp:
        unpack(deb, Path(tmp))
        files = matching_files(Path(tmp), package.files)
        if not files:
            raise CorpusError(f"{package.name}: no file matches {', '.join(package.files)} in {deb.name}")
        for doc in Path(tmp).glob(f"usr/share/doc/{package.name}/copyright"):
            (out / "licences").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(doc, out / "licences" / f"{package.name}.copyright")
        groups: dict[str, list[Path]] = {}
        for path in files:
            groups.setdefault(package.group_of(path.relative_to(tmp).as_posix()), []).append(path)
        folder = out / package.content / package.name
        for group, members in sorted(groups.items()):
            audio = [
                (p, a)
                for p in members
                if (a := load_mono(p, rate)) is not None and len(a) >= spec.min_seconds * rate
            ]
            if not audio:
                continue
            if package.content == "speech":
                rng = np.random.default_rng(int(hashlib.sha1(group.encode()).hexdigest()[:8], 16))
                joined = join_utterances([a for _, a in audio], rate, spec.speech_file_seconds, rng)
                pieces = [
                    (f"{_slug(group)}_{i:03d}.flac", a, f"{len(audio)} items") for i, a in enumerate(joined)
                ]
            else:
                pieces = [(f"{_slug(p.stem)}.flac", a, p.relative_to(tmp).as_posix()) for p, a in audio]
            for name, samples, sources in pieces:
                folder.mkdir(parents=True, exist_ok=True)
                audio_io.write(folder / name, _fit(samples), rate, subtype="PCM_16")
                rows.append(
                    {
                        "file": (folder / name).relative_to(out).as_posix(),
                        "split": "",
                        "content": package.content,
                        "package": package.name,
                        "licence": package.licence,
                        "group": group,
                        "seconds": f"{len(samples) / rate:.2f}",
                        "sample_rate": rate,
                        "sources": sources,
                    }
                )
    log.info(
        "%s: %d file(s) from %d group(s)",
        package.name,
        sum(r["package"] == package.name for r in rows),
        len(groups),
    )
    return rows


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "item"


def _write_manifest(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------- reading
def read_manifest(root: str | os.PathLike = DEFAULT_ROOT) -> list[dict]:
    """The corpus's manifest rows; CorpusError (one line, with the command that builds it) when missing."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise CorpusError(
            f"{root}: no corpus of real recordings here (no {MANIFEST}); build it with: {BUILD_COMMAND}"
        )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = set(MANIFEST_FIELDS) - set(rows[0] if rows else MANIFEST_FIELDS)
    if missing:
        raise CorpusError(
            f"{path}: not a corpus manifest (no column {', '.join(sorted(missing))}); rebuild it with: "
            f"{BUILD_COMMAND}"
        )
    return rows


def leaks(rows: list[dict]) -> dict[str, set[str]]:
    """Groups found in more than one split (a correct corpus has none)."""
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row["group"], set()).add(row["split"])
    return {group: found for group, found in splits.items() if len(found) > 1}
