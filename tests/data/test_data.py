"""Sources, datasets, samplers and the DataModule."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_app.data import audio_io
from lightning_app.data.datamodule import DenoiseDataModule
from lightning_app.data.datasets import PairedFolderDataset, ShardSampler, TrainKeySampler
from lightning_app.data.sources import AudioFolder, FileIndex
from lightning_app.data.speech import synthesize_speech
from lightning_app.training.run import build_datamodule, build_system
from tests.helpers import smoke_config, write_tone_file

SR = 16000


def _datamodule(tmp_path, *overrides):
    cfg = smoke_config(tmp_path, *overrides)
    return build_datamodule(cfg, build_system(cfg))


def _first_val_batch(dm):
    dm.setup("fit")
    return next(iter(dm.val_dataloader()))


def test_validation_set_is_identical_across_instances_workers_and_epochs(tmp_path):
    a = _first_val_batch(_datamodule(tmp_path))
    b = _first_val_batch(_datamodule(tmp_path, "data.num_workers=2"))
    torch.testing.assert_close(a["noisy"], b["noisy"])
    torch.testing.assert_close(a["clean"], b["clean"])
    c = _first_val_batch(_datamodule(tmp_path, "seed=99"))
    assert not torch.allclose(a["clean"], c["clean"]), "the seed must change the validation set"


def test_training_draws_differ_per_epoch_and_rank_but_repeat_exactly(tmp_path):
    dm = _datamodule(tmp_path)
    dm.setup("fit")
    ds = dm.train_set
    base = ds[(0, 0, 0, 0)]["noisy"]
    torch.testing.assert_close(base, ds[(0, 0, 0, 0)]["noisy"])
    assert not torch.allclose(base, ds[(0, 1, 0, 0)]["noisy"]), "epoch must change the draw"
    assert not torch.allclose(base, ds[(0, 0, 1, 0)]["noisy"]), "rank must change the draw"


def test_samplers_shard_without_padding_and_follow_the_epoch():
    shards = [list(ShardSampler(5, rank, 2)) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == [0, 1, 2, 3, 4]  # every clip exactly once
    sampler = TrainKeySampler(3, rank=1)
    sampler.set_epoch(4)
    assert list(sampler) == [(0, 4, 1, 0), (0, 4, 1, 1), (0, 4, 1, 2)]


def test_training_segments_have_the_networks_valid_length(tmp_path):
    cfg = smoke_config(tmp_path)
    system = build_system(cfg)
    dm = build_datamodule(cfg, system)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    n = batch["noisy"].shape[-1]
    assert system.net.valid_length(n) == n
    assert set(batch) >= {"noisy", "clean", "snr_db", "noise_type", "index"}


def test_speech_generator_never_returns_a_silent_clip():
    for seed in range(300):
        assert np.any(synthesize_speech(np.random.default_rng(seed), SR // 2, SR)), seed


def test_speech_generator_is_deterministic_finite_and_speech_like():
    x = synthesize_speech(np.random.default_rng(1), 2 * SR, SR)
    y = synthesize_speech(np.random.default_rng(1), 2 * SR, SR)
    np.testing.assert_array_equal(x, y)
    assert np.all(np.isfinite(x)) and 0.2 < np.abs(x).max() <= 0.9
    # Speech has pauses and loud parts: frame energies spread over a wide range.
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    assert np.percentile(energy_db, 90) - np.percentile(energy_db, 10) > 15
    # Most energy in the speech band (100 Hz - 4 kHz).
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    assert spec[(f > 100) & (f < 4000)].sum() / spec.sum() > 0.8


def test_audio_folder_reads_any_rate_and_channel_count_as_mono_at_model_rate(tmp_path):
    write_tone_file(tmp_path / "a" / "stereo44.wav", 1.0, 44100, channels=2)
    write_tone_file(tmp_path / "b" / "mono8.flac", 0.3, 8000)
    write_tone_file(tmp_path / "c" / "six.ogg", 1.0, 48000, channels=6, subtype="VORBIS")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....not audio")
    source = AudioFolder(SR, str(tmp_path), cache_dir=str(tmp_path / "cache"), loop_short=True)
    rng = np.random.default_rng(0)
    labels = set()
    for _ in range(12):
        segment, label = source(rng, SR // 2)
        assert segment.shape == (SR // 2,) and segment.dtype == np.float32
        assert np.all(np.isfinite(segment)) and np.abs(segment).max() > 0.05
        labels.add(label)
    assert labels == {"a", "b", "c"}
    assert len(list((tmp_path / "cache").glob("index-*.json"))) == 1


def test_file_index_is_cached_and_rebuilt_when_the_folder_changes(tmp_path, monkeypatch):
    write_tone_file(tmp_path / "x.wav", 0.5, SR)
    FileIndex.build(tmp_path, tmp_path / "cache")
    calls = []
    monkeypatch.setattr(audio_io, "probe", lambda p: calls.append(p))
    index = FileIndex.build(tmp_path, tmp_path / "cache")
    assert len(index) == 1 and not calls, "the cached index must be reused"
    monkeypatch.undo()
    write_tone_file(tmp_path / "y.wav", 0.5, SR)
    assert len(FileIndex.build(tmp_path, tmp_path / "cache")) == 2


def test_paired_folders_pair_by_name_and_report_mismatches(tmp_path):
    for name in ("one.wav", "sub/two.wav"):
        clean = write_tone_file(tmp_path / "clean" / name, 1.0, 22050, seed=1)
        noisy = clean + 0.1 * np.random.default_rng(2).standard_normal(clean.shape)
        (tmp_path / "noisy" / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "noisy" / name, noisy.astype(np.float32), 22050)
    ds = PairedFolderDataset(
        str(tmp_path / "noisy"), str(tmp_path / "clean"), SR, 8000, seed=0, random_crop=False
    )
    assert len(ds) == 2
    ex = ds[1]
    assert ex["noisy"].shape == ex["clean"].shape == (1, 8000)
    assert 5 < float(ex["snr_db"]) < 20
    write_tone_file(tmp_path / "noisy" / "orphan.wav", 0.5, 22050)
    with pytest.raises(FileNotFoundError, match="orphan.wav"):
        PairedFolderDataset(
            str(tmp_path / "noisy"), str(tmp_path / "clean"), SR, 8000, seed=0, random_crop=False
        )
    write_tone_file(tmp_path / "clean" / "orphan.wav", 0.5, 16000)
    with pytest.raises(audio_io.AudioFileError, match="orphan.wav.*sample rate"):
        PairedFolderDataset(
            str(tmp_path / "noisy"), str(tmp_path / "clean"), SR, 8000, seed=0, random_crop=False
        )


def test_paired_mode_trains_through_the_same_datamodule(tmp_path):
    for split in ("train", "val"):
        for i in range(3):
            clean = write_tone_file(tmp_path / split / "clean" / f"{i}.wav", 1.0, SR, seed=i)
            (tmp_path / split / "noisy").mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / split / "noisy" / f"{i}.wav", (clean * 0.9).astype(np.float32), SR)
    dm = _datamodule(
        tmp_path,
        "use=[data/paired]",
        *(f"data.paired.{s}_{k}={tmp_path / s / k}" for s in ("train", "val") for k in ("noisy", "clean")),
    )
    assert isinstance(dm, DenoiseDataModule)
    batch = _first_val_batch(dm)
    assert batch["noisy"].shape[0] == 3 and batch["noise_type"] == ["paired"] * 3


def test_a_text_file_is_replaced_whole_or_left_as_it_was(tmp_path):
    table = tmp_path / "trials.csv"
    table.write_text("old\n")
    with audio_io.atomic_text(table) as f:
        f.write("new, ")
        assert table.read_text() == "old\n", "the file changed before the new one was complete"
        f.write("whole\n")
    assert table.read_text() == "new, whole\n"
    with pytest.raises(RuntimeError), audio_io.atomic_text(table) as f:
        f.write("half")
        raise RuntimeError("interrupted")
    assert table.read_text() == "new, whole\n", "an interrupted write replaced the file"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"], "a partial file was left behind"


def test_audio_io_errors_name_the_file_and_the_problem(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(audio_io.AudioFileError, match=r"empty\.wav: empty file"):
        audio_io.read(empty)
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"fLaC" + bytes(100))
    with pytest.raises(audio_io.AudioFileError, match=r"garbage\.flac: not a readable audio file"):
        audio_io.read(garbage)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2], dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(audio_io.AudioFileError, match=r"nan\.wav: contains 1 NaN/Inf"):
        audio_io.read(nan)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(100, dtype=np.float32), SR)
    with pytest.raises(audio_io.AudioFileError, match="digital silence"):
        audio_io.read(silent)
    assert audio_io.read(silent, allow_silence=True)[0].shape == (100, 1)


@pytest.mark.slow
def test_source_bank_trains_on_crops_of_a_fixed_bank_and_leaves_validation_alone(tmp_path):
    plain = _datamodule(tmp_path)
    banked = _datamodule(tmp_path, "data.source_bank=6")
    again = _datamodule(tmp_path, "data.source_bank=6")
    for dm in (plain, banked, again):
        dm.setup("fit")
    torch.testing.assert_close(_first_val_batch(plain)["clean"], _first_val_batch(banked)["clean"])
    bank = banked.train_set.clean_source
    assert len(bank.items) == 6 and all(len(item) == 2 * banked.segment_samples for item in bank.items)
    for key in [(0, 0, 0, i) for i in range(8)]:
        example, twin = banked.train_set[key], again.train_set[key]
        torch.testing.assert_close(example["noisy"], twin["noisy"])  # same bank, same draw, in any process
        clean = example["clean"].numpy().reshape(-1)
        assert np.isfinite(clean).all() and np.std(clean) > 0
        # the clean signal is a scaled crop of one bank item
        found = False
        for item in bank.items:
            windows = np.lib.stride_tricks.sliding_window_view(item, len(clean))
            corr = windows @ clean / (np.linalg.norm(windows, axis=1) * np.linalg.norm(clean) + 1e-12)
            found |= bool(corr.max() > 0.9999)
        assert found, key


def test_two_writers_of_one_cache_file_do_not_clash(tmp_path, monkeypatch):
    """Every node's first process builds the same index (prepare_data); on a shared disk they race."""
    from lightning_app.data import cache

    replace, calls = os.replace, []

    def other_node_writes_first(src, dst):
        if not calls:
            calls.append(dst)
            cache.cached_json(tmp_path, "index", "k", lambda: {"n": 1})  # between write and rename
        replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", other_node_writes_first)
    assert cache.cached_json(tmp_path, "index", "k", lambda: {"n": 1}) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["index-k.json"], "no partial file left"


def test_tone_augmentation_reaches_training_only(tmp_path):
    toned = _datamodule(tmp_path, "data.clean.recording.tone_probability=1.0")
    plain = _datamodule(tmp_path)
    for dm in (toned, plain):
        dm.setup("fit")
    assert toned.train_set.clean_source.tone
    assert not toned.val_set.clean_source.tone and not toned.test_set.clean_source.tone
    # validation stays the clips it was: the augmentation changes what trains, not what is measured
    torch.testing.assert_close(_first_val_batch(toned)["clean"], _first_val_batch(plain)["clean"])
    key = (0, 0, 0, 0)
    assert not torch.allclose(toned.train_set[key]["clean"], plain.train_set[key]["clean"])
