"""The restoration CLI's contract: shapes, rates, formats, mix, safety with archives, bad files."""

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_app import denoise
from lightning_app.denoise import Restorer, crossfade_windows, enhance_mono, load_system
from tests.conftest import write_tone_file


@pytest.fixture(scope="module")
def system(trained_run):
    return load_system(trained_run["best"])


def _run(args):
    return denoise.main([str(a) for a in args])


@pytest.mark.parametrize("rate,channels,subtype", [(16000, 1, "PCM_16"), (44100, 1, "PCM_24"),
                                                   (16000, 2, "FLOAT"), (44100, 2, "PCM_16")])
def test_outputs_keep_name_rate_channels_length_and_format(tmp_path, trained_run, rate, channels, subtype):
    src = tmp_path / "in" / f"take_{rate}_{channels}.wav"
    write_tone_file(src, 1.3, rate, channels=channels, subtype=subtype)
    before = src.read_bytes()
    code = _run([src, "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out"])
    assert code == 0
    out = tmp_path / "out" / src.name
    info_in, info_out = sf.info(src), sf.info(out)
    assert (info_out.samplerate, info_out.channels, info_out.frames, info_out.subtype) == \
           (info_in.samplerate, info_in.channels, info_in.frames, info_in.subtype)
    assert src.read_bytes() == before, "the input must be untouched"


def test_folders_keep_their_layout_and_flac_stays_flac(tmp_path, trained_run):
    write_tone_file(tmp_path / "side_a" / "disc1" / "track.flac", 0.7, 22050)
    write_tone_file(tmp_path / "side_a" / "intro.wav", 0.7, 48000, channels=2)
    assert _run([tmp_path / "side_a", "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out"]) == 0
    assert sf.info(tmp_path / "out" / "disc1" / "track.flac").format == "FLAC"
    assert (tmp_path / "out" / "intro.wav").is_file()


def test_mix_zero_returns_the_original_and_mix_blends_linearly(system):
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((12000, 2))).astype(np.float32)
    np.testing.assert_allclose(Restorer(system, mix=0.0)(audio, 16000), audio, atol=1e-7)
    full = Restorer(system, mix=1.0)(audio, 16000)
    blend = Restorer(system, mix=0.3)(audio, 16000)
    np.testing.assert_allclose(blend, 0.3 * full + 0.7 * audio, atol=1e-6)
    with pytest.raises(ValueError, match="--mix"):
        Restorer(system, mix=1.5)


def test_crossfade_weights_sum_to_one_everywhere():
    for length, chunk, overlap in [(100, 30, 10), (1000, 256, 64), (257, 256, 64), (50, 64, 16)]:
        padded, windows = crossfade_windows(length, chunk, overlap)
        total = np.zeros(padded)
        for start, w in windows:
            total[start : start + len(w)] += w
        np.testing.assert_allclose(total[:length], 1.0, atol=1e-12)


def test_chunked_processing_matches_whole_signal_processing(system):
    audio = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1
    whole = enhance_mono(system, audio, chunk=len(audio), overlap=0)
    chunked = enhance_mono(system, audio, chunk=16000, overlap=4000, batch_size=2)
    err = np.sqrt(np.mean((whole - chunked) ** 2)) / np.sqrt(np.mean(whole**2))
    assert err < 0.05, f"chunk seams changed the output by {err:.3f} (relative RMS)"


def test_bad_files_are_reported_by_name_and_the_rest_are_done(tmp_path, trained_run, capsys):
    good = tmp_path / "in" / "good.wav"
    write_tone_file(good, 0.5, 16000)
    (tmp_path / "in" / "empty.wav").write_bytes(b"")
    (tmp_path / "in" / "corrupt.flac").write_bytes(b"fLaC" + bytes(64))
    sf.write(tmp_path / "in" / "nan.wav", np.full(800, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "in" / "silent.wav", np.zeros(800, dtype=np.float32), 16000)
    code = _run([tmp_path / "in", "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out"])
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "out" / "good.wav").is_file()
    for name, reason in [("empty.wav", "empty file"), ("corrupt.flac", "not a readable audio file"),
                         ("nan.wav", "NaN/Inf"), ("silent.wav", "digital silence")]:
        assert name in err and reason in err, name
        assert not (tmp_path / "out" / name).exists()
    assert not list((tmp_path / "out").glob(".*partial")), "no half-written files"


def test_never_overwrites_inputs_or_existing_outputs(tmp_path, trained_run, capsys):
    src = tmp_path / "a.wav"
    write_tone_file(src, 0.5, 16000)
    before = src.read_bytes()
    assert _run([src, "--checkpoint", trained_run["best"], "--output-dir", tmp_path, "--overwrite"]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert src.read_bytes() == before
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.wav").write_bytes(b"keep me")
    assert _run([src, "--checkpoint", trained_run["best"], "--output-dir", out]) == 1
    assert "already exists" in capsys.readouterr().err and (out / "a.wav").read_bytes() == b"keep me"
    assert _run([src, "--checkpoint", trained_run["best"], "--output-dir", out, "--overwrite"]) == 0
    assert sf.info(out / "a.wav").frames == sf.info(src).frames


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path, capsys):
    src = tmp_path / "a.wav"
    write_tone_file(src, 0.5, 16000)
    assert _run([src, "--checkpoint", tmp_path / "nope.ckpt", "--output-dir", tmp_path / "o"]) == 2
    assert "nope.ckpt: checkpoint not found" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    assert _run([src, "--checkpoint", tmp_path / "other.ckpt", "--output-dir", tmp_path / "o"]) == 2
    assert "not a c2c-denoise checkpoint" in capsys.readouterr().err
