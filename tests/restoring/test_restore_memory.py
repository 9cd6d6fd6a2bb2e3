"""Restoring block by block: short blocks cost no extra model time, read little, and change nothing."""

import numpy as np
import pytest
import soundfile as sf

from lightning_app.restoring.engine import Restorer, crossfade_windows
from lightning_app.restoring.files import restore_file
from lightning_app.systems.checkpoints import load_system
from tests.helpers import write_tone_file

CHUNKS = {"chunk_seconds": 0.5, "overlap_seconds": 0.1}


@pytest.fixture(scope="module")
def system(trained_run):
    return load_system(trained_run["best"])


def _restore(restorer, src, dst):
    restore_file(restorer, src, dst, subtype="FLOAT")
    return sf.read(dst, always_2d=True)[0]


def _count_chunks(monkeypatch, system):
    """Chunks the model is run on, counted at ``system.enhance``."""
    runs = []
    enhance = system.enhance
    monkeypatch.setattr(system, "enhance", lambda batch: runs.append(batch.shape[0]) or enhance(batch))
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_each_chunk_runs_once_and_blocks_equal_the_whole_file_pass_exactly(
    system, tmp_path, monkeypatch, batch_size
):
    rate = int(system.sample_rate)  # at the model's rate no resampling rounding is left: bit for bit
    src = tmp_path / "take.wav"
    write_tone_file(src, 4.3, rate, channels=2, subtype="FLOAT")
    whole = _restore(
        Restorer(system, batch_size=batch_size, block_seconds=1000.0, **CHUNKS), src, tmp_path / "whole.wav"
    )
    runs = _count_chunks(monkeypatch, system)
    restorer = Restorer(system, batch_size=batch_size, block_seconds=0.7, **CHUNKS)
    assert len(restorer.plan(sf.info(src).frames, rate)) > 4
    blocks = _restore(restorer, src, tmp_path / "blocks.wav")
    grid = restorer.grid(rate)
    _, windows = crossfade_windows(sf.info(src).frames, grid.chunk, grid.overlap)
    assert sum(runs) == 2 * len(windows), "every chunk of each channel runs once, as in one pass"
    assert max(runs) <= batch_size
    np.testing.assert_array_equal(blocks, whole)


def test_another_rate_and_mid_side_match_the_whole_file_pass(system, tmp_path):
    src = tmp_path / "transfer.wav"
    write_tone_file(src, 4.3, 48000, channels=2, subtype="FLOAT", seed=3)
    kw = dict(channel_mode="mid_side", mix=0.7, **CHUNKS)
    whole = _restore(Restorer(system, block_seconds=1000.0, **kw), src, tmp_path / "whole.wav")
    blocks = _restore(Restorer(system, block_seconds=0.7, **kw), src, tmp_path / "blocks.wav")
    np.testing.assert_allclose(blocks, whole, atol=2e-6, rtol=0)  # resampling rounding at most


def test_blocks_read_little_more_than_the_file_and_carry_little(system, tmp_path, monkeypatch):
    """At the model's rate a block reads its own samples and the cross-fade into the next one: the chunk
    it shares with the block before comes in the carry (one chunk output per signal), not from the file."""
    rate = int(system.sample_rate)
    src = tmp_path / "long.wav"
    write_tone_file(src, 8.0, rate, channels=2)
    restorer = Restorer(system, block_seconds=0.7, **CHUNKS)
    frames = sf.info(src).frames
    reads, carried = [], []
    process_block = Restorer.process_block

    def watched(self, read, *args, carry=None):
        out = process_block(self, lambda a, b: reads.append(b - a) or read(a, b), *args, carry=carry)
        carried.append(max(len(c) for c in carry.values()))
        return out

    monkeypatch.setattr(Restorer, "process_block", watched)
    restore_file(restorer, src, tmp_path / "out.wav")
    blocks = len(restorer.plan(frames, rate))
    assert len(reads) == blocks > 8
    assert sum(reads) <= frames + blocks * restorer.grid(rate).overlap
    assert max(carried) <= restorer.batch_size


@pytest.mark.parametrize("channel_mode", ["independent", "mid_side"])
def test_a_file_and_the_same_audio_in_memory_get_the_same_levels_to_the_last_bit(tmp_path, channel_mode):
    """restore_file's level scan reads a file in blocks; Restorer.__call__ has the whole array: both add the
    squares up in the same blocks, so evaluation and the CLI restore the same audio identically."""
    from lightning_app.restoring import files
    from lightning_app.restoring.engine import LEVEL_BLOCK_SECONDS

    rate = 8000
    src = tmp_path / "long.wav"
    write_tone_file(src, 2.5 * LEVEL_BLOCK_SECONDS, rate, channels=2, subtype="FLOAT")
    audio = sf.read(src, always_2d=True)[0]
    restorer = Restorer(_Halves(rate), guard=False, channel_mode=channel_mode)
    with sf.SoundFile(src) as f:
        scanned = files._scan(src, f, LEVEL_BLOCK_SECONDS * rate, restorer.to_signals)
    np.testing.assert_array_equal(scanned, restorer.mean_squares(audio, rate))


class _Halves:
    sample_rate, engine, batch_size = 8000, "stand-in", 1

    def __init__(self, rate):
        self.sample_rate = rate

    def enhance(self, batch):
        return np.asarray(batch, np.float32) * 0.5
