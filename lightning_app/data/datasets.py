"""Datasets whose every example is a pure function of a key, and the samplers that make keys.

A key is a tuple of ints. The dataset seeds a fresh numpy Generator with ``(seed, *key)``,
so an example never depends on which worker or process draws it, nor on what was drawn
before. Training keys carry (epoch, rank, position); evaluation keys are just the clip
index, so the validation set is identical across epochs, runs, workers and ranks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from lightning_app.data import audio_io
from lightning_app.data.dsp import rms
from lightning_app.data.mixing import gain_without_clipping, noise_at_snr

CONTENTS = ("speech", "music")  # content labels of the built-in sources (and of paired corpus folders)

TRAIN_STREAM = 0
VAL_STREAM = 1
TEST_STREAM = 2

MODES = ("supervised", "noise2noise")


class MixtureDataset(Dataset):
    """Clean + noise mixed at an SNR drawn from ``snr_db``.

    supervised:  {"noisy", "clean"}
    noise2noise: {"noisy" (x_a = clean + noise_a), "noisy_b" (x_b = clean + noise_b),
                  "clean", "noise", "noise_b"} — clean and the noises are for diagnostics only.
    Every example also carries "snr_db" (of x_a), "noise_type", "content" (the clean source's name:
    speech, music) and "index" (the clip's number). A fixed evaluation set (``length`` given) is
    stratified by content when the clean source can be (the same contents for every run and rank).
    """

    def __init__(
        self,
        clean_source,
        noise_source,
        num_samples: int,
        snr_db,
        gain_db,
        mode: str,
        seed: int,
        length: int | None = None,
        stream: int = TRAIN_STREAM,
    ):
        if mode not in MODES:
            raise ValueError(f"data.mode must be one of {MODES}, got {mode!r}")
        self.clean_source = clean_source
        self.noise_source = noise_source
        self.num_samples = num_samples
        self.snr_db = tuple(snr_db)
        self.gain_db = tuple(gain_db)
        self.mode = mode
        self.seed = seed
        self.length = length
        self.stream = stream
        stratify = getattr(clean_source, "stratified", None) if length is not None else None
        self.contents = stratify(length) if stratify is not None else None

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("a training MixtureDataset is endless; use TrainKeySampler")
        return self.length

    def __getitem__(self, key) -> dict:
        key = (self.stream, int(key)) if np.isscalar(key) else tuple(int(k) for k in key)
        rng = np.random.default_rng((self.seed, *key))
        if self.contents is not None:
            clean, content = self.clean_source(rng, self.num_samples, content=self.contents[key[-1]])
        else:
            clean, content = self.clean_source(rng, self.num_samples)
        noise, noise_type = self.noise_source(rng, self.num_samples)
        snr = float(rng.uniform(*self.snr_db))
        signals = {"clean": clean.astype(np.float64), "noise": noise_at_snr(clean, noise, snr)}
        if self.mode == "noise2noise":
            noise_b, _ = self.noise_source(rng, self.num_samples)
            signals["noise_b"] = noise_at_snr(clean, noise_b, float(rng.uniform(*self.snr_db)))
        signals["noisy"] = signals["clean"] + signals["noise"]
        if self.mode == "noise2noise":
            signals["noisy_b"] = signals["clean"] + signals["noise_b"]
        signals = gain_without_clipping(signals, float(rng.uniform(*self.gain_db)))
        if self.mode == "supervised":
            signals.pop("noise")
        example = {k: torch.from_numpy(v).unsqueeze(0) for k, v in signals.items()}
        example["snr_db"] = torch.tensor(snr, dtype=torch.float32)
        example["noise_type"] = noise_type
        example["content"] = content
        example["index"] = torch.tensor(key[-1])
        return example


class PairedFolderDataset(Dataset):
    """noisy/ and clean/ folders with matching relative file names (speech-enhancement corpora).

    Files under a first folder named after a content (noisy/music/..., noisy/speech/...) carry that
    content; the others carry "paired".

    Training draws a random crop per key; evaluation takes a fixed crop per file (or the whole
    file when ``num_samples`` is None, for batch size 1).
    """

    def __init__(
        self,
        noisy_dir: str,
        clean_dir: str,
        sample_rate: int,
        num_samples: int | None,
        seed: int,
        random_crop: bool,
        stream: int = VAL_STREAM,
    ):
        self.noisy_dir, self.clean_dir = Path(noisy_dir), Path(clean_dir)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.seed = seed
        self.random_crop = random_crop
        self.stream = stream
        noisy = {p.relative_to(self.noisy_dir): p for p in audio_io.find_audio_files(self.noisy_dir)}
        clean = {p.relative_to(self.clean_dir): p for p in audio_io.find_audio_files(self.clean_dir)}
        missing = sorted(str(k) for k in noisy.keys() ^ clean.keys())
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"paired folders {noisy_dir} and {clean_dir} do not match: {len(missing)} file(s) "
                f"present in only one of them: {shown}"
            )
        if not noisy:
            raise FileNotFoundError(f"{noisy_dir}: no audio files")
        self.pairs = [(noisy[k], clean[k]) for k in sorted(noisy)]
        self.infos = [self._check_pair(n, c) for n, c in self.pairs]

    @staticmethod
    def _check_pair(noisy: Path, clean: Path) -> audio_io.AudioInfo:
        a, b = audio_io.probe(noisy), audio_io.probe(clean)
        if a.sample_rate != b.sample_rate:
            raise audio_io.AudioFileError(
                noisy,
                f"sample rate {a.sample_rate} Hz differs from its clean twin {clean} ({b.sample_rate} Hz)",
            )
        if abs(a.frames - b.frames) > a.sample_rate // 100:
            raise audio_io.AudioFileError(
                noisy, f"{a.frames} frames but its clean twin {clean} has {b.frames}"
            )
        return a

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key) -> dict:
        if np.isscalar(key):
            index, rng = int(key), np.random.default_rng((self.seed, self.stream, int(key)))
        else:
            rng = np.random.default_rng((self.seed, *(int(k) for k in key)))
            index = int(rng.integers(len(self.pairs)))
        noisy_path, clean_path = self.pairs[index]
        info = self.infos[index]
        need = None
        start = 0
        if self.num_samples is not None:
            need = int(math.ceil(self.num_samples * info.sample_rate / self.sample_rate)) + 16
            if info.frames > need:
                start = (
                    int(rng.integers(0, info.frames - need))
                    if self.random_crop
                    else (info.frames - need) // 2
                )
        out = {}
        for name, path in (("noisy", noisy_path), ("clean", clean_path)):
            mono = audio_io.read_resampled(path, info.sample_rate, self.sample_rate, start, self.num_samples)
            if self.num_samples is not None:
                mono = np.pad(mono, (0, max(0, self.num_samples - len(mono))))[: self.num_samples]
            out[name] = mono
        n = min(len(out["noisy"]), len(out["clean"]))
        example = {
            k: torch.from_numpy(np.ascontiguousarray(v[:n], dtype=np.float32)).unsqueeze(0)
            for k, v in out.items()
        }
        clean, noise = example["clean"].numpy(), (example["noisy"] - example["clean"]).numpy()
        example["snr_db"] = torch.tensor(
            10 * np.log10((rms(clean) ** 2 + 1e-12) / (rms(noise) ** 2 + 1e-12)), dtype=torch.float32
        )
        example["noise_type"] = "paired"
        # Files under noisy/music/ and noisy/speech/ (and the clean twins) are reported per content.
        top = noisy_path.relative_to(self.noisy_dir).parts[0]
        example["content"] = top if top in CONTENTS else "paired"
        example["index"] = torch.tensor(index)
        return example


class TrainKeySampler(Sampler):
    """Keys (stream, epoch, rank, position) for ``num_items`` training examples per epoch and rank.

    Lightning calls ``set_epoch`` before each epoch, so each epoch, rank and position gets its
    own draw, and a resumed run draws exactly what the uninterrupted run would have.
    """

    def __init__(self, num_items: int, rank: int = 0, stream: int = TRAIN_STREAM):
        self.num_items = num_items
        self.rank = rank
        self.stream = stream
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self):
        return iter([(self.stream, self.epoch, self.rank, i) for i in range(self.num_items)])


class ShardSampler(Sampler):
    """Clip indices rank, rank + world, ... — every clip once in total, no padding.

    (DistributedSampler pads shards to equal length, which counts some clips twice.)
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, num_items, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)
