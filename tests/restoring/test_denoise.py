"""The restoration CLI's contract: shapes, rates, formats, mix, safety with archives, bad files."""

import dataclasses
import logging
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_app import denoise
from lightning_app.data import audio_io
from lightning_app.restoring import batch
from lightning_app.restoring.engine import (
    RESAMPLING_MARGIN,
    Restorer,
    chunk_grid,
    chunks_reaching,
    crossfade_windows,
    enhance_mono,
    model_length,
    plan_block,
    plan_grid,
)
from lightning_app.restoring.files import restore_file
from lightning_app.systems.checkpoints import load_model, load_system
from tests.helpers import perturbed_checkpoint, write_tone_file


@pytest.fixture(scope="module")
def system(trained_run):
    return load_system(trained_run["best"])


def _run(args):
    return denoise.main([str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize(
    "rate,channels,subtype",
    [
        (8000, 1, "PCM_16"),
        (16000, 1, "PCM_16"),
        (22050, 2, "PCM_24"),
        (44100, 1, "PCM_24"),
        (44100, 2, "PCM_16"),
        (48000, 2, "FLOAT"),
        (48000, 6, "PCM_24"),
        (16000, 6, "FLOAT"),
    ],
)
def test_outputs_keep_name_rate_channels_length_and_format(tmp_path, trained_run, rate, channels, subtype):
    src = tmp_path / "in" / f"take_{rate}_{channels}.wav"
    write_tone_file(src, 1.3, rate, channels=channels, subtype=subtype)
    before = src.read_bytes()
    code = _run([src, "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out"])
    assert code == 0
    out = tmp_path / "out" / src.name
    info_in, info_out = sf.info(src), sf.info(out)
    assert (info_out.samplerate, info_out.channels, info_out.frames, info_out.subtype) == (
        info_in.samplerate,
        info_in.channels,
        info_in.frames,
        info_in.subtype,
    )
    assert src.read_bytes() == before, "the input must be untouched"


@pytest.mark.slow
def test_folders_keep_their_layout_and_flac_stays_flac(tmp_path, trained_run):
    write_tone_file(tmp_path / "side_a" / "disc1" / "track.flac", 0.7, 22050)
    write_tone_file(tmp_path / "side_a" / "intro.wav", 0.7, 48000, channels=2)
    assert (
        _run([tmp_path / "side_a", "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out"])
        == 0
    )
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
        # a range of the grid holds exactly the chunks of the full list that reach into it
        for first, last in [(0, 1), (15, 45), (length - 1, length), (chunk - overlap, chunk + 1)]:
            _, some = crossfade_windows(length, chunk, overlap, first, last)
            expected = [(s, w) for s, w in windows if s < last and s + len(w) > first]
            assert [s for s, _ in some] == [s for s, _ in expected], (length, first, last)
            for (_, a), (_, b) in zip(some, expected, strict=True):
                np.testing.assert_array_equal(a, b)


def test_chunked_processing_matches_whole_signal_processing(system):
    audio = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1
    whole = enhance_mono(system, audio, chunk=len(audio), overlap=0)
    chunked = enhance_mono(system, audio, chunk=16000, overlap=4000, batch_size=2)
    err = np.sqrt(np.mean((whole - chunked) ** 2)) / np.sqrt(np.mean(whole**2))
    assert err < 0.05, f"chunk seams changed the output by {err:.3f} (relative RMS)"


@pytest.mark.slow
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
    for name, reason in [
        ("empty.wav", "empty file"),
        ("corrupt.flac", "not a readable audio file"),
        ("nan.wav", "NaN/Inf"),
        ("silent.wav", "digital silence"),
    ]:
        assert name in err and reason in err, name
        assert not (tmp_path / "out" / name).exists()
    assert not list((tmp_path / "out").glob(".*partial")), "no half-written files"


@pytest.mark.slow
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


def _restore_in_blocks(system, tmp_path, rate, channels, block_seconds, **kw):
    src = tmp_path / f"long_{rate}_{channels}.wav"
    if not src.exists():
        write_tone_file(src, 4.3, rate, channels=channels, subtype="FLOAT", seed=channels)
    dst = tmp_path / f"out_{block_seconds}_{rate}_{channels}.wav"
    restorer = Restorer(system, chunk_seconds=0.5, overlap_seconds=0.1, block_seconds=block_seconds, **kw)
    restore_file(restorer, src, dst, residual=tmp_path / "residual.wav")
    return (
        sf.read(src, always_2d=True)[0],
        sf.read(dst, always_2d=True)[0],
        sf.read(tmp_path / "residual.wav", always_2d=True)[0],
    )


@pytest.mark.parametrize(
    "rate,channels,mode",
    [(16000, 1, "independent"), (44100, 2, "independent"), (48000, 2, "mid_side"), (22050, 1, "independent")],
)
def test_block_by_block_restoration_equals_the_whole_file_pass(system, tmp_path, rate, channels, mode):
    original, blocks, residual = _restore_in_blocks(system, tmp_path, rate, channels, 0.7, channel_mode=mode)
    _, whole, _ = _restore_in_blocks(system, tmp_path, rate, channels, 1000.0, channel_mode=mode)
    assert (
        len(
            Restorer(system, chunk_seconds=0.5, overlap_seconds=0.1, block_seconds=0.7).plan(
                len(original), rate
            )
        )
        > 4
    )
    assert blocks.shape == whole.shape == original.shape
    np.testing.assert_allclose(blocks, whole, atol=2e-6, rtol=0)  # float32 rounding, not seams
    assert np.max(np.abs(whole - original)) > 1e-3, "the model changed the audio"
    np.testing.assert_allclose(residual, original - blocks, atol=1e-6)


def _band_energy(audio, rate, low_hz):
    spectrum = np.abs(np.fft.rfft(audio[:, 0])) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    return spectrum[freqs > low_hz].sum()


def test_the_band_above_the_models_nyquist_is_passed_through_or_dropped(system, tmp_path):
    rate = 48000
    t = np.arange(2 * rate) / rate
    audio = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 12000 * t))[:, None].astype(
        np.float32
    )
    passed = Restorer(system, high_band="pass")(audio, rate)
    dropped = Restorer(system, high_band="drop")(audio, rate)
    above = _band_energy(audio, rate, 9000)
    assert _band_energy(passed, rate, 9000) == pytest.approx(above, rel=0.02)
    assert _band_energy(dropped, rate, 9000) < 1e-3 * above


@pytest.mark.slow
def test_cli_writes_the_residual_and_a_chosen_sample_format(tmp_path, trained_run, capsys, caplog):
    caplog.set_level(logging.INFO, logger="lightning_app")
    src = tmp_path / "in" / "take.wav"
    write_tone_file(src, 1.0, 48000, channels=2)
    code = _run(
        [
            src,
            "--checkpoint",
            trained_run["best"],
            "--output-dir",
            tmp_path / "out",
            "--residual",
            "--subtype",
            "PCM_24",
            "--channels",
            "mid-side",
            "--no-progress",
        ]
    )
    assert code == 0
    out, residual = tmp_path / "out" / "take.wav", tmp_path / "out" / "take.residual.wav"
    assert sf.info(out).subtype == "PCM_24" and sf.info(residual).frames == sf.info(src).frames
    assert (
        "above it passed through untouched" in caplog.text and "real-time factor" in capsys.readouterr().out
    )
    # a second run refuses to replace the residual too
    assert (
        _run([src, "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out", "--residual"]) == 1
    )


def test_an_interrupted_restoration_leaves_no_output_under_the_final_name(system, tmp_path, monkeypatch):
    src = tmp_path / "in.wav"
    write_tone_file(src, 3.0, 16000)
    restorer = Restorer(system, chunk_seconds=0.5, overlap_seconds=0.1, block_seconds=0.5)
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return Restorer.process_block(restorer, *args, **kwargs)

    monkeypatch.setattr(restorer, "process_block", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        restore_file(restorer, src, tmp_path / "out.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


@pytest.mark.slow
def test_the_same_input_reached_twice_is_restored_once(tmp_path, trained_run, capsys):
    folder = tmp_path / "d"
    write_tone_file(folder / "x.wav", 0.5, 16000)
    write_tone_file(folder / "y.wav", 0.5, 16000, seed=1)
    for args, restored in (([folder / "x.wav", folder / "x.wav"], 1), ([folder, folder / "x.wav"], 2)):
        out = tmp_path / f"out{restored}"
        assert _run([*args, "--checkpoint", trained_run["best"], "--output-dir", out, "--no-progress"]) == 0
        assert f"{restored} of {restored} file(s) restored" in capsys.readouterr().out
        assert (out / "x.wav").is_file()
    # Two different inputs that would share one output name are still refused.
    write_tone_file(tmp_path / "e" / "x.wav", 0.5, 16000, seed=2)
    code = _run(
        [
            folder / "x.wav",
            tmp_path / "e" / "x.wav",
            "--checkpoint",
            trained_run["best"],
            "--output-dir",
            tmp_path / "clash",
            "--no-progress",
        ]
    )
    assert code == 1 and "is also the output of" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("suffix,subtype,container", [(".flac", "FLOAT", "FLAC"), (".wav", "VORBIS", "WAV")])
def test_a_subtype_the_container_cannot_hold_is_refused_before_any_work(
    tmp_path, trained_run, capsys, suffix, subtype, container
):
    src = tmp_path / f"take{suffix}"
    write_tone_file(src, 0.5, 16000)
    out = tmp_path / "out"
    code = _run([src, "--checkpoint", trained_run["best"], "--output-dir", out, "--subtype", subtype])
    err = capsys.readouterr().err
    assert code == 2 and f"--subtype {subtype} cannot be written to {suffix} files" in err
    assert ", ".join(sf.available_subtypes(container)) in err, "the message names what the container holds"
    assert not out.exists(), "nothing written"


def test_an_output_folder_that_is_a_file_is_refused_in_one_line_before_loading(tmp_path, capsys, monkeypatch):
    src = tmp_path / "take.wav"
    write_tone_file(src, 0.5, 16000)
    (tmp_path / "not_a_folder").write_text("x")
    monkeypatch.setattr(batch, "open_network", lambda *a, **k: pytest.fail("the model must not be loaded"))
    for out in (tmp_path / "not_a_folder", tmp_path / "not_a_folder" / "sub"):
        assert _run([src, "--checkpoint", "unused.ckpt", "--output-dir", out]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --output-dir {out}: {tmp_path / 'not_a_folder'} is a file, not a folder"]


def _start_cli(args):
    """The CLI in its own process, as `kill`, `timeout` and schedulers see it."""
    return subprocess.Popen(
        [sys.executable, "-m", "lightning_app.denoise", *map(str, args), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )


def _default_signals():
    """The child's SIGINT as a terminal gives it: a test run in the background (`make test &`) inherits SIGINT
    ignored, and the CLI rightly leaves an ignored signal ignored (nohup)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_partial(proc, folder, after):
    """Block until ``after`` is restored and the next file's temporary file exists (the run is writing it)."""
    deadline = time.monotonic() + 120
    while not (after.exists() and list(folder.glob(".*.partial"))):
        assert proc.poll() is None, f"the run ended before it was signalled: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture(scope="module")
def short_and_long(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals")
    write_tone_file(folder / "short.wav", 0.5, 16000)
    write_tone_file(folder / "long.wav", 240.0, 16000)  # seconds of work: the signal lands mid-write
    return folder / "short.wav", folder / "long.wav"


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_sigterm_and_sigint_stop_in_one_line_and_leave_nothing_half_written(
    tmp_path, trained_run, short_and_long, signum, code
):
    out = tmp_path / "out"
    proc = _start_cli([*short_and_long, "--checkpoint", trained_run["best"], "--output-dir", out])
    _wait_for_partial(proc, out, out / "short.wav")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if not line.startswith("model: ")]  # which model: said first
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"restored {short_and_long[0]}") and lines[1:] == [
        f"interrupted ({signal.Signals(signum).name}): 1 of 2 file(s) restored; nothing half-written left"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["short.wav"], "no partial file, no long.wav"


@pytest.mark.slow
def test_a_killed_runs_partial_is_removed_at_the_next_run_but_a_live_writers_is_kept(
    tmp_path, trained_run, short_and_long
):
    out = tmp_path / "out"
    proc = _start_cli([*short_and_long, "--checkpoint", trained_run["best"], "--output-dir", out])
    _wait_for_partial(proc, out, out / "short.wav")
    proc.kill()  # SIGKILL: nothing can clean up
    proc.communicate()
    [left] = out.glob(".*.partial")
    assert left.name.startswith(".c2c-") and "long" not in left.name, "hidden, never the output's name"
    assert audio_io.find_audio_files(out) == [out / "short.wav"], "never taken for audio"
    # The same name pattern written by a live process (this one) or on another host: still being written.
    _, host, _, rest = left.name.split("-")
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    live = out / f".c2c-{host}-{os.getpid()}-{rest}"
    elsewhere = out / f".c2c-{other_host}-{proc.pid}-{rest}"  # a pid we cannot check there
    live.write_bytes(b"in progress")
    elsewhere.write_bytes(b"in progress on another node")
    src = tmp_path / "next.wav"
    write_tone_file(src, 0.5, 16000)
    assert _run([src, "--checkpoint", trained_run["best"], "--output-dir", out, "--no-progress"]) == 0
    assert not left.exists(), "the killed run's leftover is gone"
    assert live.exists() and elsewhere.exists(), "a file that may still be written is never deleted"


@pytest.mark.slow
def test_a_255_byte_file_name_is_restored_under_its_full_name(tmp_path, trained_run):
    name = "ä" * 125 + "x.wav"  # 255 bytes in UTF-8: the longest name a file system allows
    assert len(name.encode()) == 255
    src = tmp_path / "in" / name
    write_tone_file(src, 0.5, 16000)
    assert (
        _run([src, "--checkpoint", trained_run["best"], "--output-dir", tmp_path / "out", "--no-progress"])
        == 0
    )
    assert [p.name for p in (tmp_path / "out").iterdir()] == [name]
    assert sf.info(tmp_path / "out" / name).frames == sf.info(src).frames


@pytest.mark.slow
def test_clipping_to_an_integer_format_is_counted_and_reported_never_silent(tmp_path, trained_run, caplog):
    caplog.set_level(logging.INFO, logger="lightning_app")
    rate = 16000
    t = np.arange(2 * rate) / rate
    src = tmp_path / "hot.wav"  # a square-ish wave captured hot, in float: well over full scale
    sf.write(src, 1.5 * np.clip(3 * np.sin(2 * np.pi * 220 * t), -1, 1), rate, subtype="FLOAT")
    args = [src, "--checkpoint", trained_run["best"], "--no-progress"]
    assert _run([*args, "--output-dir", tmp_path / "float"]) == 0
    assert "clipped" not in caplog.text, "FLOAT keeps overs: nothing clipped, nothing to report"
    kept = sf.read(tmp_path / "float" / "hot.wav")[0]
    overs = int(
        np.count_nonzero(np.abs(kept) > 1.0)
    )  # what PCM_16 cannot hold, counted from the float result
    assert overs > 0
    caplog.clear()
    assert _run([*args, "--output-dir", tmp_path / "pcm", "--subtype", "PCM_16"]) == 0
    peak = 20 * np.log10(np.abs(kept).max())
    out = tmp_path / "pcm" / "hot.wav"
    assert (
        f"{out}: {overs} samples over full scale clipped (peak {peak:+.1f} dBFS); --subtype FLOAT keeps them"
        in caplog.text
    )
    assert f"; {overs} samples clipped)" in caplog.text, "the per-file summary line carries the count"
    written = sf.read(out, dtype="int16")[0]
    assert np.all(np.abs(written[np.abs(kept) > 1.0].astype(int)) >= 32767), (
        "clipped to full scale, not wrapped"
    )


@pytest.mark.slow
def test_report_flag_writes_the_listening_page_beside_the_outputs(tmp_path, trained_run):
    src = tmp_path / "in" / "take.wav"
    write_tone_file(src, 10.0, 16000, channels=2)  # long enough for two separate 4-s excerpts
    out = tmp_path / "out"
    assert (
        _run(
            [
                src,
                "--checkpoint",
                trained_run["best"],
                "-o",
                out,
                "--residual",
                "--report",
                "--content",
                "music",
                "--no-progress",
            ]
        )
        == 0
    )
    page = (out / "report.html").read_text()
    assert "take.wav" in page and page.count("<audio") == 6, "loudest and quietest: before, after, removed"
    rows = (out / "report.csv").read_text().splitlines()
    assert len(rows) == 2 and "take.wav" in rows[1]


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000, 96000])
def test_block_grid_edges_fall_on_samples_both_rates_share_and_cover_the_file(rate):
    grid = plan_grid(rate, 44100, chunk_seconds=5.0, overlap_seconds=0.5, block_seconds=120.0)
    assert grid.unit_model * rate == grid.unit_file * 44100, "a grid unit is the same time at both rates"
    assert (grid.chunk - grid.overlap) % grid.unit_model == 0, "chunk steps land on shared sample positions"
    assert (
        grid.block_file % grid.unit_file == 0
        and (grid.block_file // grid.unit_file * grid.unit_model) % (grid.chunk - grid.overlap) == 0
    ), "a block is a whole number of chunk steps"
    frames = 3 * grid.block_file + 7
    blocks = grid.blocks(frames)
    assert blocks[0][0] == 0 and blocks[-1][1] == frames and len(blocks) == 4
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False)), "blocks tile the file"
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.chunk = 1


@pytest.mark.parametrize("experiment", ["supervised_unet", "pure_noise2noise"])
def test_the_lightning_free_model_restores_exactly_as_the_trained_system(tmp_path, experiment):
    path = perturbed_checkpoint(tmp_path, experiment)
    model, system = load_model(path), load_system(path)
    assert model.kind == system.kind and model.sample_rate == system.sample_rate
    audio = (0.1 * np.random.default_rng(2).standard_normal((9000, 2))).astype(np.float32)
    np.testing.assert_array_equal(
        Restorer(model, chunk_seconds=0.25, overlap_seconds=0.05)(audio, 22050),
        Restorer(system, chunk_seconds=0.25, overlap_seconds=0.05)(audio, 22050),
    )


def test_every_variant_denoises_through_its_network_alone():
    """load_model runs a checkpoint's network without its LightningModule: that holds only while no variant
    gives inference a path of its own (then checkpoints.Denoiser must learn it)."""
    from lightning_app.systems.base import DenoiseSystem
    from lightning_app.systems.checkpoints import SYSTEM_KINDS
    from lightning_app.systems.registry import SYSTEMS

    assert set(SYSTEM_KINDS) == set(SYSTEMS)
    for kind, cls in SYSTEMS.items():
        assert cls.enhance is DenoiseSystem.enhance, f"system {kind!r} overrides enhance"


@pytest.mark.slow
def test_restoring_imports_no_lightning(tmp_path, trained_run):
    """Lightning costs each start of the command (every task of a cluster restore) 3.7 s and 300 MB."""
    src = tmp_path / "take.wav"
    write_tone_file(src, 0.5, 16000)
    code = (
        "import sys; from lightning_app import denoise; status = denoise.main(sys.argv[1:]); "
        "print('IMPORTED', sorted({m.split('.')[0] for m in sys.modules} & "
        "{'lightning', 'pytorch_lightning', "
        "'lightning_fabric', 'torchmetrics', 'matplotlib'})); sys.exit(status)"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(src),
            "--checkpoint",
            str(trained_run["best"]),
            "-o",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stdout, done.stdout
    assert (tmp_path / "out" / "take.wav").is_file()


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: the GPU restore path is checked against the CPU one where a GPU is present",
)
def test_the_gpu_restores_what_the_cpu_restores(tmp_path):
    path = perturbed_checkpoint(tmp_path, "supervised_unet")
    audio = (0.1 * np.random.default_rng(3).standard_normal((40000, 2))).astype(np.float32)
    kw = dict(chunk_seconds=0.25, overlap_seconds=0.05, block_seconds=0.6, batch_size=4)
    cpu = Restorer(load_model(path, "cpu"), **kw)(audio, 48000)
    gpu = Restorer(load_model(path, "cuda"), **kw)(audio, 48000)
    np.testing.assert_allclose(gpu, cpu, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rate, batch_size", [(44100, 2), (48000, 2), (16000, 3), (96000, 4)])
def test_block_plans_read_what_their_chunks_need_and_run_each_chunk_once_in_whole_batches(rate, batch_size):
    """plan_block, alone: the reads hold every chunk run and the block; carried blocks run the file's chunks
    once, in the fixed batches one pass over the file would run."""
    model_rate = 44100
    grid = plan_grid(rate, model_rate, chunk_seconds=0.5, overlap_seconds=0.05, block_seconds=1.0)
    frames = 7 * grid.block_file + 123
    _, count, step = chunk_grid(model_length(frames, rate, model_rate), grid.chunk, grid.overlap)
    ran: list[int] = []
    carried: set[int] = set()
    for block in grid.blocks(frames):
        plan = plan_block(grid, frames, rate, model_rate, block, batch_size, carried)
        alone = plan_block(grid, frames, rate, model_rate, block, batch_size)
        assert alone.run1 == alone.need1 and alone.need0 == plan.need0, (
            "without a carry, only what the block needs"
        )
        first_alone = (
            chunks_reaching(alone.total, grid.chunk, grid.overlap, alone.need0, alone.run1)[0] * step
        )
        assert alone.offset <= first_alone, "without a carry, the first chunk has its input"
        assert plan.read0_f <= block[0] and block[1] <= plan.read1_f, "the read holds the block"
        starts = [
            i * step for i in chunks_reaching(plan.total, grid.chunk, grid.overlap, plan.need0, plan.run1)
        ]
        run = [s for s in starts if s not in carried]
        if run:
            assert plan.offset <= run[0], "the first chunk run has its input"
            read_end_m = model_length(plan.read1_f, rate, model_rate)
            assert min(run[-1] + grid.chunk, plan.total) <= read_end_m, "the last chunk run has its input"
            in1_f = math.ceil(min(run[-1] + grid.chunk, plan.total) * rate / model_rate)
            if rate == model_rate:
                assert plan.read0_f == min(plan.need0, run[0]), (
                    "at the model's rate nothing is read for resampling"
                )
            else:
                assert plan.read1_f == frames or plan.read1_f - in1_f >= RESAMPLING_MARGIN, (
                    "the resampling taps"
                )
        groups = {s // step // batch_size for s in run}
        whole = {i * step for g in groups for i in range(g * batch_size, min((g + 1) * batch_size, count))}
        assert set(run) == whole, "a block runs whole batches of the file's chunk grid"
        ran += run
        carried = {s for s in starts if s + grid.chunk > plan.keep_from}
    assert ran == [i * step for i in range(count)], "every chunk of the file run once, in order"
