"""Test sets: procedural mixtures, paired folders and the real-recordings corpus, each a list of clips.

A clip is a dict with ``noisy``, ``clean`` (or None), ``name``, ``content`` and, where known, ``snr_db``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_app import config as C
from lightning_app.data import audio_io
from lightning_app.data.datasets import CONTENTS, TEST_STREAM, MixtureDataset, PairedFolderDataset
from lightning_app.data.dsp import rms
from lightning_app.data.recording import high_shelf
from lightning_app.data.sources import build_clean_source, build_noise_source, corpus_contents

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "supervised_unet"


# ----------------------------------------------------------------------------- test set
def synthetic_test_set(
    clips: int,
    seconds: float,
    overrides: list[str],
    experiment: str = DEFAULT_EXPERIMENT,
    stream: int = TEST_STREAM,
) -> tuple[list[dict], int]:
    """The fixed synthetic test clips from ``experiment``'s data settings (plus ``overrides``); another
    ``stream`` draws the same kind of clips from that stream instead (the training one, for calibration)."""
    cfg = C.compose(experiment, overrides)
    d = cfg.data
    sr = d.sample_rate
    spec = C.to_container(d.clean)
    # This set is the procedural one: real contents are scored on the real test set (real_test_set) instead.
    spec["mix"] = {name: w for name, w in spec["mix"].items() if name not in corpus_contents(spec)}
    clean = build_clean_source(sr, cache_dir=d.cache_dir, **spec)
    noise = build_noise_source(sr, cache_dir=d.cache_dir, **C.to_container(d.noise))
    dataset = MixtureDataset(
        clean,
        noise,
        num_samples=round(seconds * sr),
        snr_db=d.snr_db,
        gain_db=d.gain_db,
        mode="supervised",
        seed=cfg.seed,
        length=clips,
        stream=stream,
    )
    return [clip_from_example(dataset[i], f"clip{i:03d}") for i in range(clips)], sr


REAL_SNR_DB = (0.0, 30.0)

REAL_SEED = 1234

REAL_STREAM = 7  # the real test set's seed stream: no training or validation draw uses it


def snr_buckets(snr_db: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    """The 5-dB input-SNR buckets (on multiples of 5 dB) that cover ``snr_db``."""
    low, high = 5 * math.floor(snr_db[0] / 5), 5 * math.ceil(snr_db[1] / 5)
    return tuple((float(b), float(b + 5)) for b in range(low, high, 5))


REAL_SNR_BUCKETS = snr_buckets(REAL_SNR_DB)


def noise_generators(experiment: str) -> tuple[str, ...]:
    """The procedural noise generators ``experiment`` draws from (none where its noise is a folder's)."""
    noise = C.to_container(C.compose(experiment, []).data.noise)
    if noise.get("kind") != "procedural":
        return ()
    return tuple(
        name for name, spec in noise["procedural"]["generators"].items() if spec.get("weight", 0) > 0
    )


@dataclass(frozen=True)
class RealDraw:
    """How the real set is drawn beyond its split and size. The default is the set every report quotes; the
    others are harder draws of the val split to look for the rare clips a model harms: another ``seed``, input
    SNRs over ``snr_db``, and only the clips whose noise holds one of ``noise_types`` (generator names)."""

    snr_db: tuple[float, float] = REAL_SNR_DB
    seed: int = REAL_SEED
    noise_types: tuple[str, ...] = ()

    def __post_init__(self):
        low, high = self.snr_db
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"the real set's input SNR range must rise, got {low:g}-{high:g} dB")

    def check_noise(self, experiment: str) -> None:
        """ValueError (one line naming those there are) for a noise type ``experiment`` never draws."""
        if not self.noise_types:  # nothing to check: no need to compose the experiment's config
            return
        known = noise_generators(experiment)
        unknown = sorted(set(self.noise_types) - set(known))
        if unknown:
            there = f"it draws {', '.join(known)}" if known else "its noise comes from a folder"
            raise ValueError(f"no noise generator named {', '.join(unknown)} in {experiment} ({there})")

    @property
    def is_default(self) -> bool:
        return self == RealDraw()

    def describe(self) -> str:
        text = f"input SNRs spread over {self.snr_db[0]:g}-{self.snr_db[1]:g} dB"
        if not self.is_default:
            text += f", seed {self.seed}"
        if self.noise_types:
            text += f", only the clips whose noise holds {' or '.join(self.noise_types)}"
        return text


def real_test_set(
    root: Path,
    split: str = "test",
    clips_per_content: int = 36,
    seconds: float = 6.0,
    experiment: str = "archive_fullband",
    draw: RealDraw = RealDraw(),
) -> tuple[list[dict], int]:
    """Clips of the real corpus's ``split`` (data/real, ``make corpus``), degraded by the experiment's noise
    generators: per content ``clips_per_content`` clips of ``seconds``, taking the split's groups (tracks,
    speakers) in turn, at input SNRs spread evenly over ``draw.snr_db`` so every 5-dB bucket holds its share.
    Each clip is a pure function of (``draw.seed``, content, index). With ``draw.noise_types``, of those clips
    only the ones whose noise holds one of them are kept (ValueError, one line, for a generator the experiment
    never draws). CorpusError (one line) when there is no corpus."""
    from lightning_app.data.corpus import read_manifest
    from lightning_app.data.mixing import gain_without_clipping, noise_at_snr

    draw.check_noise(experiment)
    cfg = C.compose(experiment, [])
    rate = int(cfg.data.sample_rate)
    noise = build_noise_source(rate, cache_dir=cfg.data.cache_dir, **C.to_container(cfg.data.noise))
    snr_db, noise_types = draw.snr_db, draw.noise_types
    rows = [r for r in read_manifest(root) if r["split"] == split]
    n = round(seconds * rate)
    clips = []
    for content in sorted({r["content"] for r in rows}):
        by_group: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            if row["content"] == content:
                by_group[row["group"]].append(row)
        groups_ = sorted(by_group)
        for i in range(clips_per_content):
            rng = np.random.default_rng((draw.seed, REAL_STREAM, CONTENTS.index(content), i))
            members = by_group[groups_[i % len(groups_)]]
            clean = real_segment(root, members, rng, n, rate)
            if clean is None:
                continue
            snr = snr_db[0] + (i + rng.uniform()) / clips_per_content * (snr_db[1] - snr_db[0])
            noise_audio, noise_type = noise(rng, n)
            if noise_types and not set(noise_types) & set(noise_type.split("+")):
                continue
            signals = {"clean": clean.astype(np.float64), "noise": noise_at_snr(clean, noise_audio, snr)}
            signals = gain_without_clipping(
                {"clean": signals["clean"], "noisy": signals["clean"] + signals["noise"]},
                float(rng.uniform(-20.0, -6.0)),
            )
            clips.append(
                {
                    "name": f"real-{content}{i:03d}",
                    "noisy": signals["noisy"],
                    "clean": signals["clean"],
                    "snr_db": float(snr),
                    "noise_types": noise_type.split("+"),
                    "content": content,
                    "origin": members[0]["package"],
                    "track": groups_[i % len(groups_)],  # the manifest's group: the recording to listen to
                }
            )
    if not clips:
        kept = f" under {' or '.join(noise_types)}" if noise_types else ""
        raise FileNotFoundError(f"{root}: the {split} split gave no usable clips{kept}")
    return clips, rate


SHELF_CORNER_HZ = 5000.0  # where the real set's brighter (or darker) copies turn (with_high_shelf)


def with_high_shelf(
    clips: list[dict], rate: int, gain_db: float, corner_hz: float = SHELF_CORNER_HZ
) -> list[dict]:
    """Copies of ``clips`` whose clean side went through a high shelf of ``gain_db`` above ``corner_hz``
    (recording.high_shelf): the same recordings mastered brighter (gain > 0) or darker, under the same
    noise at the same input SNR. Bright music is where a denoiser takes the top octave for hiss."""
    copies = []
    for clip in clips:
        clean = high_shelf(clip["clean"], rate, gain_db, corner_hz)
        noise = (clip["noisy"] - clip["clean"]) * (rms(clean) / max(rms(clip["clean"]), 1e-12))
        name = f"{clip['name']}-shelf{gain_db:+g}"
        copies.append(
            {**clip, "name": name, "clean": clean, "noisy": clean + noise, "shelf_db": float(gain_db)}
        )
    return copies


def real_segment(
    root: Path, members: list[dict], rng: np.random.Generator, n: int, rate: int, tries: int = 8
) -> np.ndarray | None:
    """A segment of ``n`` samples of one of the group's files, loud enough to score (the loudest of a few
    tries)."""
    best, best_rms = None, 0.0
    for _ in range(tries):
        row = members[int(rng.integers(len(members)))]
        path = Path(root) / row["file"]
        info = audio_io.probe(path)
        start = int(rng.integers(0, max(1, info.frames - n)))
        segment = audio_io.read_resampled(path, info.sample_rate, rate, start, n)
        if len(segment) < n:
            segment = np.pad(segment, (0, n - len(segment)))
        level = rms(segment)
        if level > best_rms:
            best, best_rms = segment, level
        if level > 10 ** (-40 / 20) and np.mean(np.abs(segment) > 1e-4) > 0.6:  # mostly sounding, not a gap
            break
    return best if best_rms > 1e-4 else None


def silent_clean_rms(experiment: str | None = None, overrides=()) -> float:
    """The clean RMS below which a clip is left out of SI-SDR/SNR: the experiment's
    metrics.silent_clean_rms."""
    return float(C.compose(experiment or DEFAULT_EXPERIMENT, list(overrides)).metrics.silent_clean_rms)


def paired_test_set(
    folder: Path, sample_rate: int, clips: int | None, silent_rms: float
) -> tuple[list[dict], int, list[dict]]:
    """DIR/noisy + DIR/clean, whole files, at ``sample_rate`` (the first ``clips`` usable pairs), and the
    pairs skipped on the way, each {"file", "reason"}: a pair that cannot be scored is left out, not fatal."""
    if not Path(folder).is_dir():  # name the folder given, not the noisy/ inside it
        raise FileNotFoundError(
            f"{folder}: no such folder" if not Path(folder).exists() else f"{folder}: not a folder"
        )
    noisy_dir, clean_dir = folder / "noisy", folder / "clean"
    noisy = {p.relative_to(noisy_dir).as_posix(): p for p in audio_io.find_audio_files(noisy_dir)}
    clean = {p.relative_to(clean_dir).as_posix(): p for p in audio_io.find_audio_files(clean_dir)}
    if not noisy:
        raise FileNotFoundError(f"{noisy_dir}: no audio files")
    test_clips, skipped = [], []
    for name in sorted(noisy.keys() | clean.keys()):
        if clips is not None and len(test_clips) >= clips:
            break
        if name not in clean:
            reason = f"noisy/{name} has no clean partner (no clean/{name})"
        elif name not in noisy:
            reason = f"clean/{name} has no noisy partner (no noisy/{name})"
        else:
            try:
                test_clips.append(paired_clip(name, noisy[name], clean[name], sample_rate, silent_rms))
                continue
            except audio_io.AudioFileError as exc:
                where = Path(exc.path)
                reason = (
                    f"{where.relative_to(folder) if where.is_relative_to(folder) else where}: {exc.reason}"
                )
        skipped.append({"file": name, "reason": " ".join(reason.split())})  # one line
        log.warning("skipped %s", skipped[-1]["reason"])
    return test_clips, sample_rate, skipped


def paired_clip(name: str, noisy: Path, clean: Path, sample_rate: int, silent_rms: float) -> dict:
    """One whole pair at ``sample_rate``; AudioFileError (naming the file) if it cannot be scored: unreadable,
    sample rates or lengths that differ, NaN/Inf samples, or a clean reference below ``silent_rms``."""
    PairedFolderDataset._check_pair(noisy, clean)  # the corpus rule: same rate, same length
    audio = {}
    for side, path in (("noisy", noisy), ("clean", clean)):
        samples, rate = audio_io.read(path, allow_silence=True)  # NaN/Inf raise here
        audio[side] = audio_io.resample(audio_io.to_mono(samples), rate, sample_rate).astype(np.float32)
    if rms(audio["clean"]) < silent_rms:
        raise audio_io.AudioFileError(
            clean,
            f"silent clean reference (RMS {rms(audio['clean']):.1e} < "
            f"{silent_rms:g}): nothing to score against",
        )
    n = min(len(audio["noisy"]), len(audio["clean"]))
    x, s = audio["noisy"][:n], audio["clean"][:n]
    top = name.split("/")[0] if "/" in name else None  # noisy/music/..., noisy/speech/...: per content
    snr_db = float(10 * np.log10((rms(s) ** 2 + 1e-12) / (rms(x - s) ** 2 + 1e-12)))
    return {
        "name": name,
        "noisy": x,
        "clean": s,
        "snr_db": snr_db,
        "noise_types": ["paired"],
        "content": top if top in CONTENTS else "paired",
    }


def clip_from_example(example: dict, name: str) -> dict:
    return {
        "name": name,
        "noisy": example["noisy"].numpy().reshape(-1),
        "clean": example["clean"].numpy().reshape(-1),
        "snr_db": float(example["snr_db"]),
        "noise_types": example["noise_type"].split("+"),
        "content": example.get("content"),
    }


def label_contents(
    clips: list[dict], rate: int, content: str = "auto", labelled_by: str = "their folder"
) -> dict:
    """Give each clip without a content label (a paired file in no speech/ or music/ folder) one, in place:
    ``content`` "speech" or "music" sets it, "auto" guesses it from the clip's clean reference (at ``rate``)
    (:func:`lightning_app.metrics.content.guess_content`). Returns {"note": the sentence the report and the
    console show (which content, and where it came from), "guesses": [{"file", "content", "why"}]}."""
    from lightning_app.metrics.content import guess_content

    def counts(labels) -> str:
        return ", ".join(f"{k} {n}" for k, n in sorted(Counter(labels).items()))

    known = [c["content"] for c in clips if c["content"] in CONTENTS]
    unlabelled = [c for c in clips if c["content"] not in CONTENTS]
    guesses = []
    for clip in unlabelled:
        if content == "auto":
            guess = guess_content(clip["clean"], rate)
            clip["content"] = guess.content
            guesses.append({"file": clip["name"], "content": guess.content, "why": guess.why()})
        else:
            clip["content"] = content
    parts = [f"{counts(known)} (labelled by {labelled_by})"] if known else []
    if unlabelled and content != "auto":
        parts.append(f"{content} (set by --content {content}) for {len(unlabelled)} unlabelled file(s)")
    elif unlabelled:
        found = Counter(g["content"] for g in guesses)
        if len(found) == 1:
            kind = next(iter(found))
            parts.append(
                f"{kind} (guessed from the clean files: {len(guesses)} of {len(guesses)} unlabelled file(s) "
                f"look like {kind}; pass --content speech|music to set it)"
            )
        else:
            parts.append(
                f"guessed per file from the clean files: {found['speech']} unlabelled file(s) look like "
                f"speech, {found['music']} like music (pass --content speech|music to set them)"
            )
        log.info(
            "content of %d unlabelled file(s) guessed from the clean references: %s",
            len(guesses),
            counts(found),
        )
    return {"note": "Content: " + "; ".join(parts) + ".", "guesses": guesses}
