"""The one DataModule every variant trains and validates on."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from lightning_app.data.datasets import (
    TEST_STREAM,
    VAL_STREAM,
    MixtureDataset,
    PairedFolderDataset,
    ShardSampler,
    TrainKeySampler,
)
from lightning_app.data.pairs import RealPairDataset, RealPairIndex
from lightning_app.data.sources import (
    AudioFolder,
    SourceBank,
    build_clean_source,
    build_noise_source,
    corpus_contents,
)


class DenoiseDataModule(L.LightningDataModule):
    """Synthetic mixtures (procedural or folder sources), paired noisy/clean folders, or real
    Noise2Noise pairs (training only; their validation is the synthetic noise2noise set, since
    real pairs have no clean reference to score against).

    ``segment_samples`` and ``val_samples`` come from the network's ``valid_length`` so the
    U-Net never pads. Our samplers shard by rank themselves (train: different draws per
    rank; val: every clip exactly once), so the Trainer must not add a DistributedSampler
    (``use_distributed_sampler=False``).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        mode: str,
        segment_samples: int,
        val_samples: int,
        snr_db,
        gain_db,
        batch_size: int,
        num_workers: int,
        train_examples_per_epoch: int,
        val_clips: int,
        seed: int,
        clean: dict,
        noise: dict,
        paired: dict | None,
        real_pairs: dict | None,
        cache_dir: str | None,
        source_bank: int,
    ):
        super().__init__()
        self.sample_rate = sample_rate
        self.mode = mode
        self.segment_samples = segment_samples
        self.val_samples = val_samples
        self.snr_db, self.gain_db = tuple(snr_db), tuple(gain_db)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_examples_per_epoch = train_examples_per_epoch
        self.val_clips = val_clips
        self.seed = seed
        self.clean_spec, self.noise_spec = clean, noise
        self.paired = paired or {}
        self.real_pairs = real_pairs or {}
        self.source_bank = source_bank
        self.cache_dir = cache_dir
        self.train_set = self.val_set = None

    def _clean_source(self, split: str = "train", tone: bool = False):
        """The clean source; ``split`` is the corpus split real contents draw from (train, val or test);
        ``tone``: with the recording's tone augmentation (training only)."""
        return build_clean_source(
            self.sample_rate, cache_dir=self.cache_dir, split=split, tone=tone, **self.clean_spec
        )

    def _sources(self):
        return self._clean_source(tone=True), build_noise_source(
            self.sample_rate, cache_dir=self.cache_dir, **self.noise_spec
        )

    def _pair_index(self) -> RealPairIndex:
        return RealPairIndex.build(
            sample_rate=self.sample_rate,
            min_samples=self.segment_samples,
            cache_dir=self.cache_dir,
            folder_a=self.real_pairs["a"],
            folder_b=self.real_pairs["b"],
            **{k: v for k, v in self.real_pairs.items() if k not in ("a", "b")},
        )

    def prepare_data(self) -> None:
        # Runs once per node: build folder indexes (and pair alignments) so every rank then only reads the
        # cache.
        if self.mode != "paired":
            clean, noise = self._sources()
            held_out = self._clean_source("val").folders() if corpus_contents(self.clean_spec) else []
            for source in [*clean.folders(), *held_out, noise]:
                if isinstance(source, AudioFolder):
                    source.prepare()
        if self.mode == "real_pairs":
            self._pair_index()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.mode == "paired":
            p = self.paired
            self.train_set = PairedFolderDataset(
                p["train_noisy"],
                p["train_clean"],
                self.sample_rate,
                self.segment_samples,
                self.seed,
                random_crop=True,
            )
            self.val_set = PairedFolderDataset(
                p["val_noisy"],
                p["val_clean"],
                self.sample_rate,
                self.val_samples,
                self.seed,
                random_crop=False,
            )
            return
        clean, noise = self._sources()
        common = dict(
            clean_source=clean,
            noise_source=noise,
            snr_db=self.snr_db,
            gain_db=self.gain_db,
            mode="noise2noise" if self.mode == "real_pairs" else self.mode,
            seed=self.seed,
        )
        if self.mode == "real_pairs":
            self.train_set = RealPairDataset(
                self._pair_index(), self.sample_rate, self.segment_samples, self.gain_db, self.seed
            )
        else:
            self.train_set = MixtureDataset(num_samples=self.segment_samples, **common)
            if self.source_bank:  # training only: validation and test keep their exact procedural clips
                self.train_set.clean_source, self.train_set.noise_source = (
                    SourceBank(src, self.source_bank, self.segment_samples, self.seed, stream)
                    for stream, src in enumerate((clean, noise))
                )
                for bank in (self.train_set.clean_source, self.train_set.noise_source):
                    bank.fill()
        # Real contents validate on the corpus's val split and test on its test split, never on what trains.
        for name, split, stream in (("val_set", "val", VAL_STREAM), ("test_set", "test", TEST_STREAM)):
            held_out = dict(
                common,
                clean_source=self._clean_source(split)
                if corpus_contents(self.clean_spec)
                else clean.without_tone(),
            )
            setattr(
                self,
                name,
                MixtureDataset(
                    num_samples=self.val_samples, length=self.val_clips, stream=stream, **held_out
                ),
            )

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, dataset, sampler, shuffle_workers: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=shuffle_workers and self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        per_rank = max(self.batch_size, self.train_examples_per_epoch // world)
        return self._loader(self.train_set, TrainKeySampler(per_rank, rank=rank), shuffle_workers=True)

    def val_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        return self._loader(self.val_set, ShardSampler(len(self.val_set), rank, world), shuffle_workers=False)

    def test_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        dataset = self.test_set if self.mode != "paired" else self.val_set
        return self._loader(dataset, ShardSampler(len(dataset), rank, world), shuffle_workers=False)
