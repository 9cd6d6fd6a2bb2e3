"""Where clean audio (speech, music) and noise come from: procedural generators or folders of files.

A source is called with a numpy Generator and a length and returns mono float audio at
the model's sample rate plus a short label (used to break metrics down by noise type).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from lightning_app.data import audio_io
from lightning_app.data.cache import cached_json, fingerprint
from lightning_app.data.dsp import rms
from lightning_app.data.music import MusicConfig, synthesize_music
from lightning_app.data.noise import NoiseMixture
from lightning_app.data.recording import RecordingConfig, apply_recording, apply_tone
from lightning_app.data.speech import SpeechConfig, synthesize_speech

log = logging.getLogger(__name__)

# Segments quieter than this (RMS, full scale 1.0) are treated as silence when cropping files.
SILENCE_RMS = 1e-4


class ProceduralSpeech:
    label = "speech"

    def __init__(self, sample_rate: int, **speech_ranges):
        self.sample_rate = sample_rate
        self.config = SpeechConfig(
            **{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in speech_ranges.items()}
        )

    def __call__(self, rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, str]:
        return synthesize_speech(rng, num_samples, self.sample_rate, self.config), self.label


class ProceduralNoise:
    def __init__(self, sample_rate: int, generators: dict, max_layers: int = 3, layer_level_db=(-12.0, 0.0)):
        self.sample_rate = sample_rate
        self.mixture = NoiseMixture(generators, max_layers=max_layers, layer_level_db=tuple(layer_level_db))

    def __call__(self, rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, str]:
        return self.mixture(rng, num_samples, self.sample_rate)


class FileIndex:
    """Header facts of every audio file under a folder, cached as JSON next to the runs.

    The cache key covers every file's path, size and mtime, so edits to the folder
    rebuild it. Unreadable files are logged once by name and left out.
    """

    def __init__(self, entries: list[dict], root: str):
        self.entries = entries
        self.root = root

    @classmethod
    def build(cls, root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> FileIndex:
        files = audio_io.find_audio_files(root)
        if not files:
            raise FileNotFoundError(f"{root}: no .wav/.flac/.ogg files found")

        def probe_all() -> dict:
            entries = []
            for f in files:
                try:
                    entries.append(asdict(audio_io.probe(f)))
                except audio_io.AudioFileError as exc:
                    log.warning("skipping %s", exc)
            if not entries:
                raise FileNotFoundError(f"{root}: no readable audio files (all {len(files)} failed to open)")
            return {"root": str(root), "entries": entries}

        data = cached_json(cache_dir, "index", fingerprint(files), probe_all)
        return cls(data["entries"], data["root"])

    def __len__(self) -> int:
        return len(self.entries)


class AudioFolder:
    """Random segments of audio files under a folder, read without loading whole files.

    Files are picked with probability proportional to their duration; multichannel files
    are averaged to mono and resampled to the model's rate. A file shorter than the segment
    is looped (noise) or zero-padded at a random offset (speech).
    """

    def __init__(
        self,
        sample_rate: int,
        path: str,
        cache_dir: str | None = None,
        loop_short: bool = False,
        label: str | None = None,
        max_tries: int = 5,
    ):
        self.sample_rate = sample_rate
        self.path = path
        self.cache_dir = cache_dir
        self.loop_short = loop_short
        self.label = label
        self.max_tries = max_tries
        self._index: FileIndex | None = None

    def prepare(self) -> None:
        """Build (or load) the file index; cheap on later calls."""
        if self._index is None:
            self._index = FileIndex.build(self.path, self.cache_dir)
            seconds = np.array([e["frames"] / e["sample_rate"] for e in self._index.entries])
            self._probs = seconds / seconds.sum()

    def _read_segment(self, rng: np.random.Generator, entry: dict, num_samples: int) -> np.ndarray:
        sr = entry["sample_rate"]
        need = int(np.ceil(num_samples * sr / self.sample_rate)) + 16
        if entry["frames"] > need:
            start = int(rng.integers(0, entry["frames"] - need))
            mono = audio_io.read_resampled(entry["path"], sr, self.sample_rate, start, num_samples)
        else:
            mono = audio_io.read_resampled(entry["path"], sr, self.sample_rate)
        if len(mono) >= num_samples:
            return mono[:num_samples]
        if self.loop_short:
            return np.tile(mono, int(np.ceil(num_samples / len(mono))))[:num_samples]
        out = np.zeros(num_samples, dtype=np.float32)
        offset = int(rng.integers(0, num_samples - len(mono) + 1))
        out[offset : offset + len(mono)] = mono
        return out

    def __call__(self, rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, str]:
        self.prepare()
        segment = None
        for _ in range(self.max_tries):
            entry = self._index.entries[int(rng.choice(len(self._index), p=self._probs))]
            try:
                segment = self._read_segment(rng, entry, num_samples)
            except (audio_io.AudioFileError, sf.LibsndfileError) as exc:
                log.warning("skipping unreadable segment: %s", exc)
                continue
            if rms(segment) > SILENCE_RMS:
                break
        if segment is None:
            raise RuntimeError(f"{self.path}: could not read a usable segment in {self.max_tries} tries")
        label = self.label or Path(entry["path"]).parent.name
        return segment.astype(np.float32), label


class ProceduralMusic:
    label = "music"

    def __init__(self, sample_rate: int, **music_ranges):
        self.sample_rate = sample_rate
        self.config = MusicConfig.from_ranges(**music_ranges)

    def __call__(self, rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, str]:
        return synthesize_music(rng, num_samples, self.sample_rate, self.config), self.label


class CleanMixture:
    """Clean audio drawn from weighted content sources; the label of each draw is its content's name.

    Procedural sources go through the recording chain (room, era band limit); folders of real
    recordings are used as they were recorded. With ``tone`` (training) every source, real ones too, may
    then get a high shelf (recording.apply_tone). Evaluation sets ask for a given content
    (``content=``), so they can be stratified; training draws the content by weight.
    """

    def __init__(
        self,
        sources: dict,
        weights: dict[str, float],
        recording: RecordingConfig | None = None,
        tone: bool = False,
    ):
        self.sources = sources
        self.tone = tone
        self.names = [name for name in sources if weights.get(name, 0.0) > 0]
        if not self.names:
            raise ValueError("data.clean.mix: every weight is 0, nothing to draw clean audio from")
        w = np.array([weights[name] for name in self.names], dtype=float)
        self.probs = w / w.sum()
        self.recording = recording

    def stratified(self, count: int) -> list[str]:
        """Contents of ``count`` evaluation clips: each content's share by weight (largest remainder),
        interleaved so that any prefix of the set is mixed too."""
        exact = self.probs * count
        counts = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - counts), kind="stable")[: count - counts.sum()]:
            counts[i] += 1
        order = sorted(((j + 0.5) / c, i) for i, c in enumerate(counts) for j in range(c))
        return [self.names[i] for _, i in order]

    def __call__(
        self, rng: np.random.Generator, num_samples: int, content: str | None = None
    ) -> tuple[np.ndarray, str]:
        if content is None:
            content = self.names[int(rng.choice(len(self.names), p=self.probs))]
        source = self.sources[content]
        audio, _ = source(rng, num_samples)
        if self.recording is not None and not isinstance(
            source, AudioFolder
        ):  # recordings: as they were made
            audio, _ = apply_recording(rng, audio, source.sample_rate, self.recording)
        if self.tone and self.recording is not None:
            audio = apply_tone(rng, audio, source.sample_rate, self.recording)
        return np.asarray(audio, dtype=np.float32), content

    def without_tone(self) -> CleanMixture:
        """The same sources, weights and recording chain without the tone augmentation (held-out sets)."""
        weights = dict(zip(self.names, self.probs, strict=True))
        return CleanMixture(self.sources, weights, self.recording, tone=False)

    def folders(self) -> list[AudioFolder]:
        return [s for s in self.sources.values() if isinstance(s, AudioFolder)]


def build_content_source(
    sample_rate: int,
    content: str,
    kind: str,
    cache_dir: str | None,
    folder: dict | None = None,
    procedural: dict | None = None,
    corpus: str | None = None,
    split: str = "train",
):
    if kind == "procedural":
        return (ProceduralSpeech if "speech" in content else ProceduralMusic)(
            sample_rate, **(procedural or {})
        )
    if kind == "folder":
        return AudioFolder(sample_rate, cache_dir=cache_dir, loop_short=False, label=content, **folder)
    if (
        kind == "corpus"
    ):  # the real recordings of `make corpus`: its train split trains, val validates, test tests
        from lightning_app.data.corpus import CorpusError, read_manifest

        try:
            read_manifest(corpus)
        except CorpusError as exc:
            raise FileNotFoundError(f"data.clean.{content}: {exc}") from None
        what = "speech" if "speech" in content else "music"
        return AudioFolder(
            sample_rate,
            path=str(Path(corpus) / split / what),
            cache_dir=cache_dir,
            loop_short=False,
            label=content,
        )
    raise ValueError(f"data.clean.{content}.kind must be 'procedural', 'folder' or 'corpus', got {kind!r}")


def corpus_contents(clean: dict) -> list[str]:
    """The contents of ``data.clean`` (a plain dict) drawn from the corpus of real recordings, with
    weight > 0."""
    return [
        name
        for name, weight in clean.get("mix", {}).items()
        if weight > 0 and clean.get(name, {}).get("kind") == "corpus"
    ]


def build_clean_source(
    sample_rate: int,
    cache_dir: str | None,
    mix: dict,
    recording: dict,
    split: str = "train",
    tone: bool = False,
    **contents,
) -> CleanMixture:
    """The clean side from ``data.clean``: {mix: {content: weight}, recording: {...}, speech: {...},
    music: {...}, real_speech: {...}, real_music: {...}}; ``split`` picks the corpus split that real
    contents draw from. ``tone``: training's high-shelf augmentation (validation and test sets go without,
    so their figures keep meaning the recordings as they are)."""
    unknown = sorted(set(mix) - set(contents))
    if unknown:
        raise ValueError(f"data.clean.mix names {unknown}; known contents: {sorted(contents)}")
    sources = {
        name: build_content_source(sample_rate, name, cache_dir=cache_dir, split=split, **contents[name])
        for name, weight in mix.items()
        if weight > 0
    }
    return CleanMixture(sources, dict(mix), RecordingConfig.from_ranges(**recording), tone=tone)


def build_noise_source(sample_rate: int, kind: str, cache_dir: str | None, folder: dict, procedural: dict):
    if kind == "procedural":
        return ProceduralNoise(sample_rate, **procedural)
    if kind == "folder":
        return AudioFolder(sample_rate, cache_dir=cache_dir, loop_short=True, **folder)
    raise ValueError(f"data.noise.kind must be 'procedural' or 'folder', got {kind!r}")


def _bank_item(args) -> tuple[np.ndarray, str]:
    source, seed, stream, index, num_samples = args
    return source(np.random.default_rng((seed, 7, stream, index)), num_samples)


class SourceBank:
    """A fixed set of segments drawn once from a slow source; examples take random crops of them.

    Procedural speech and noise cost ~10 ms a segment, which is what starves a GPU: with a bank,
    an example costs a crop and a mix, while clean x noise x crop x SNR x gain still gives far
    more distinct mixtures than any run draws. Items are twice the requested length, drawn from
    keys (seed, stream, index), so every worker and rank holds the same bank; the DataLoader's
    forked workers share its memory. Filled in parallel processes.
    """

    def __init__(
        self, source, size: int, num_samples: int, seed: int, stream: int, workers: int | None = None
    ):
        self.source = source
        self.size = size
        self.item_samples = 2 * num_samples
        self.seed = seed
        self.stream = stream
        self.workers = workers or max(1, min(os.cpu_count() or 1, size // 64))  # small banks: no pool
        self.items: list[np.ndarray] = []
        self.labels: list[str] = []

    def fill(self) -> None:
        if self.items:
            return
        jobs = [(self.source, self.seed, self.stream, i, self.item_samples) for i in range(self.size)]
        if self.workers > 1:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(
                self.workers
            ) as pool:  # no fork of a torch process
                results = pool.map(_bank_item, jobs, chunksize=16)
        else:
            results = [_bank_item(j) for j in jobs]
        self.items = [np.asarray(a, dtype=np.float32) for a, _ in results]
        self.labels = [label for _, label in results]

    def __call__(self, rng: np.random.Generator, num_samples: int) -> tuple[np.ndarray, str]:
        self.fill()
        i = int(rng.integers(self.size))
        item = self.items[i]
        if num_samples > len(item):
            raise ValueError(f"bank items hold {len(item)} samples, {num_samples} asked for")
        start = int(rng.integers(0, len(item) - num_samples + 1))
        segment = item[start : start + num_samples]
        if rms(segment) <= SILENCE_RMS:  # a crop inside a pause: take the item's start instead
            segment = item[:num_samples]
        return segment, self.labels[i]
