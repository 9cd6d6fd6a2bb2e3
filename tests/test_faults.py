"""The fault matrix: what a user may hand the suite by mistake, and the contract every case meets.

Each case builds its fault under tmp_path and runs a command line (denoise, train or sweep) on it, then
checks: the exit status; one line naming the thing and the problem (an error on stderr, or a warning
where the work is still done); no traceback; nothing created or left behind beyond the outputs the case
expects; every input byte-identical. Signals and a full disk are marked slow.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_app import denoise, evaluate, sweep, train
from lightning_app.data import audio_io
from lightning_app.restoring.files import residual_path
from tests.helpers import write_tone_file

FAST = ("metrics.perceptual_every_n_epochs=100", "metrics.visqol_clips=0", "media.every_n_epochs=100")
SMOKE = "use=[data/smoke,model/tiny]"
LONG_NAME = "ä" * 125 + "x.wav"  # 255 bytes in UTF-8: the longest name a file system allows
MAINS = {"denoise": denoise.main, "train": train.main, "sweep": sweep.main, "evaluate": evaluate.main}


@dataclass
class Case:
    command: str  # denoise, train, sweep or evaluate
    build: object  # (tmp, checkpoint) -> arguments
    code: int  # exit status
    line: str  # regex of the one line (error, FAILED or warning) naming the thing and the problem
    created: set = field(default_factory=set)  # paths under tmp the run must make (and nothing else)
    warning: bool = False  # the line is a logged warning: the work is done


def _tree(root: Path) -> dict:
    """Every path under root: file bytes, 'folder', or the link's target (links are not followed)."""
    out = {}
    for folder, subfolders, names in os.walk(root):
        for name in subfolders + names:
            path = Path(folder, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = f"-> {os.readlink(path)}"
            else:
                out[rel] = "folder" if path.is_dir() else path.read_bytes()
    return out


def _tone(tmp: Path, name: str = "in/a.wav", seconds: float = 0.5, channels: int = 1) -> Path:
    write_tone_file(tmp / name, seconds, 16000, channels=channels)
    return tmp / name


def _restore(*inputs, out="out", extra=()):
    def build(tmp, ckpt):
        made = [i(tmp) if callable(i) else tmp / i for i in inputs]
        return [*made, "--checkpoint", ckpt, "--output-dir", tmp / out, "--no-progress", *extra]

    return build


# ----------------------------------------------------------------------------- faults built on disk
def _empty(tmp):
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / "empty.wav").write_bytes(b"")
    return tmp / "in" / "empty.wav"


def _text(tmp):
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / "notes.wav").write_text("not audio")
    return tmp / "in" / "notes.wav"


def _samples(name, values):
    def make(tmp):
        (tmp / "in").mkdir(exist_ok=True)
        sf.write(tmp / "in" / name, values, 16000, subtype="FLOAT")
        return tmp / "in" / name

    return make


def _dangling_in_folder(tmp):
    _tone(tmp, "in/good.wav")
    (tmp / "in" / "gone.wav").symlink_to(tmp / "elsewhere" / "gone.wav")
    return tmp / "in"


def _dangling(tmp):
    (tmp / "in").mkdir()
    (tmp / "in" / "gone.wav").symlink_to(tmp / "elsewhere" / "gone.wav")
    return tmp / "in" / "gone.wav"


def _linked_subfolder(tmp):
    _tone(tmp, "shelf/b.wav")
    _tone(tmp, "in/a.wav")
    (tmp / "in" / "side").symlink_to(tmp / "shelf", target_is_directory=True)
    return tmp / "in"


def _link_loop(tmp):
    _tone(tmp, "in/a.wav")
    (tmp / "in" / "again").symlink_to(tmp / "in", target_is_directory=True)
    return tmp / "in"


def _truncated(tmp):
    src = _tone(tmp, "in/cut.wav", seconds=1.0)
    data = src.read_bytes()
    src.write_bytes(data[: 44 + (len(data) - 44) // 2])  # the header still promises 1 s
    return src


def _existing_output(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "a.wav").write_bytes(b"an earlier result")
    return _tone(tmp)


def _file(name, data=b"x"):
    def make(tmp):
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


def _checkpoint_case(spec):
    def build(tmp, _):
        target = spec(tmp) if callable(spec) else tmp / spec
        return [_tone(tmp), "--checkpoint", target, "--output-dir", tmp / "out", "--no-progress"]

    return build


def _folder(tmp):
    (tmp / "models").mkdir()
    return tmp / "models"


def _train(*extra):
    def build(tmp, _):
        return [
            "supervised_unet",
            f"run.root={tmp / 'runs'}",
            f"data.cache_dir={tmp / 'cache'}",
            SMOKE,
            *FAST,
            *[e(tmp) if callable(e) else e for e in extra],
        ]

    return build


def _sweep(*extra, name="learning_rate"):
    def build(tmp, _):
        return [
            "supervised_unet",
            name,
            f"run.root={tmp / 'runs'}",
            f"data.cache_dir={tmp / 'cache'}",
            SMOKE,
            *[e(tmp) if callable(e) else e for e in extra],
        ]

    return build


def _at(text):
    """An argument naming a path under tmp: '{tmp}' is replaced (and a file 'afile' and a folder 'adir'
    exist)."""

    def make(tmp):
        (tmp / "afile").write_text("not a folder")
        (tmp / "adir").mkdir(exist_ok=True)
        return text.format(tmp=tmp)

    return make


def _fake_run(tmp):
    run = tmp / "runs" / "supervised_unet" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("experiment: supervised_unet\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint\n")
    return f"--resume-from={run}"


CASES = {
    # denoise: the inputs
    "denoise-missing-file": Case("denoise", _restore("in/none.wav"), 1, r"FAILED .*none\.wav: no such file"),
    "denoise-empty-file": Case(
        "denoise", _restore(_empty), 1, r"FAILED .*empty\.wav: empty file \(0 bytes\)"
    ),
    "denoise-not-audio": Case(
        "denoise", _restore(_text), 1, r"FAILED .*notes\.wav: not a readable audio file"
    ),
    "denoise-nan": Case(
        "denoise",
        _restore(_samples("nan.wav", np.r_[np.zeros(100), np.nan, np.ones(900)] * 0.1)),
        1,
        r"FAILED .*nan\.wav: contains NaN/Inf samples",
    ),
    "denoise-silence": Case(
        "denoise",
        _restore(_samples("zero.wav", np.zeros(8000))),
        1,
        r"FAILED .*zero\.wav: is digital silence",
    ),
    "denoise-folder-without-audio": Case(
        "denoise", _restore(lambda t: _file("in/readme.md")(t).parent), 2, r"error: no audio files found"
    ),
    "denoise-input-is-a-folder-of-nothing": Case(
        "denoise", _restore(lambda t: (t / "in").mkdir() or t / "in"), 2, r"error: no audio files found"
    ),
    "denoise-dangling-link-in-folder": Case(
        "denoise",
        _restore(_dangling_in_folder),
        1,
        r"FAILED .*in/gone\.wav: a link to .*gone\.wav, which does not exist",
        created={"out", "out/good.wav"},
    ),
    "denoise-dangling-link-given": Case(
        "denoise", _restore(_dangling), 1, r"FAILED .*gone\.wav: a link to .*gone\.wav, which does not exist"
    ),
    "denoise-linked-subfolder": Case(
        "denoise",
        _restore(_linked_subfolder),
        0,
        "",
        created={"out", "out/a.wav", "out/side", "out/side/b.wav"},
    ),
    "denoise-link-loop": Case("denoise", _restore(_link_loop), 0, "", created={"out", "out/a.wav"}),
    "denoise-truncated-wav": Case(
        "denoise",
        _restore(_truncated),
        0,
        r"cut\.wav: truncated: its header promises 1\.00 s, the file holds 0\.50 s",
        created={"out", "out/cut.wav"},
        warning=True,
    ),
    "denoise-mid-side-6-channels": Case(
        "denoise",
        _restore(lambda t: _tone(t, channels=6), extra=["--channels", "mid-side"]),
        0,
        r"a\.wav: --channels mid-side needs two channels; its 6 channel",
        created={"out", "out/a.wav"},
        warning=True,
    ),
    "denoise-long-name-residual": Case(
        "denoise",
        _restore(lambda t: _tone(t, f"in/{LONG_NAME}"), extra=["--residual"]),
        0,
        "",
        created={"out", f"out/{LONG_NAME}", "RESIDUAL"},
    ),
    # denoise: outputs and options
    "denoise-output-dir-is-a-file": Case(
        "denoise",
        _restore(lambda t: _file("afile")(t) and _tone(t), out="afile/sub"),
        2,
        r"error: --output-dir .*afile/sub: .*afile is a file, not a folder",
    ),
    "denoise-output-exists": Case(
        "denoise",
        _restore(_existing_output),
        1,
        r"FAILED .*a\.wav: output .*out/a\.wav already exists \(use --overwrite",
    ),
    "denoise-output-is-the-input": Case(
        "denoise",
        _restore(_tone, out="in"),
        1,
        r"FAILED .*a\.wav: its output .*would overwrite an input file",
    ),
    "denoise-bad-subtype": Case(
        "denoise",
        _restore(_tone, extra=["--subtype", "PCM_13"]),
        2,
        r"error: --subtype PCM_13 is not a sample format",
    ),
    "denoise-subtype-container": Case(
        "denoise",
        _restore(_tone, extra=["--subtype", "FLOAT"], out="out"),
        0,
        "",
        created={"out", "out/a.wav"},
    ),
    "denoise-flac-float": Case(
        "denoise",
        _restore(lambda t: _tone(t, "in/a.flac"), extra=["--subtype", "FLOAT"]),
        2,
        r"error: --subtype FLOAT cannot be written to \.flac files",
    ),
    "denoise-mix-out-of-range": Case(
        "denoise",
        _restore(_tone, extra=["--mix", "1.5"]),
        2,
        r"error: --mix must be between 0 and 1, got 1\.5",
    ),
    "denoise-file-list-missing": Case(
        "denoise",
        lambda t, c: ["--file-list", t / "none.tsv", "-o", t / "out", "--checkpoint", c],
        2,
        r"error: .*none\.tsv",
    ),
    "denoise-file-list-not-a-list": Case(
        "denoise",
        lambda t, c: [
            "--file-list",
            _file("list.tsv", b"a\tb\n1\t2\n")(t),
            "-o",
            t / "out",
            "--checkpoint",
            c,
        ],
        2,
        r"error: .*list\.tsv: not a file list",
    ),
    # denoise: the checkpoint
    "checkpoint-missing": Case(
        "denoise", _checkpoint_case("none.ckpt"), 2, r"error: .*none\.ckpt: checkpoint not found"
    ),
    "checkpoint-is-a-folder": Case(
        "denoise", _checkpoint_case(_folder), 2, r"error: .*models: a folder, not a checkpoint file"
    ),
    "checkpoint-empty": Case(
        "denoise", _checkpoint_case(_file("e.ckpt", b"")), 2, r"error: .*e\.ckpt: the file is empty"
    ),
    "checkpoint-garbage": Case(
        "denoise",
        _checkpoint_case(_file("g.ckpt", b"not a checkpoint\n" * 10)),
        2,
        r"error: .*g\.ckpt: not a PyTorch checkpoint",
    ),
    # train
    "train-run-root-is-a-file": Case(
        "train",
        _train(_at("run.root={tmp}/afile")),
        2,
        r"error: run\.root=.*afile: .*afile is a file, not a folder",
    ),
    "train-run-root-under-a-file": Case(
        "train",
        _train(_at("run.root={tmp}/afile/runs")),
        2,
        r"error: run\.root=.*afile/runs: .*afile is a file, not a folder",
    ),
    "train-cache-dir-is-a-file": Case(
        "train",
        _train(_at("data.cache_dir={tmp}/afile")),
        2,
        r"error: data\.cache_dir=.*afile: .*afile is a file, not a folder",
    ),
    "train-bad-value": Case(
        "train",
        _train("trainer.max_epochs=abc"),
        2,
        r"error: trainer\.max_epochs must be a whole number, got 'abc'",
    ),
    "train-unknown-key": Case(
        "train", _train("trainer.max_epoch=3"), 2, r"error: unknown config key 'trainer\.max_epoch'"
    ),
    "train-unknown-experiment": Case(
        "train", lambda t, c: ["no_such_experiment"], 2, r"error: unknown experiment 'no_such_experiment'"
    ),
    "train-nothing-to-resume": Case(
        "train", _train("--resume"), 2, r"error: nothing to resume: no run under"
    ),
    "train-resume-from-missing": Case(
        "train",
        _train(_at("--resume-from={tmp}/no_run")),
        2,
        r"error: --resume-from .*no_run: expected a run directory",
    ),
    "train-resume-corrupt-checkpoint": Case(
        "train", _train(_fake_run), 2, r"error: cannot resume: .*last\.ckpt"
    ),
    "train-init-from-missing": Case(
        "train",
        _train(_at("system.init_from={tmp}/none.ckpt")),
        2,
        r"error: system\.init_from=.*none\.ckpt: no such checkpoint file",
    ),
    # sweep
    "sweep-trials-not-a-number": Case(
        "sweep",
        _sweep("trials=abc"),
        2,
        r"error: trials must be a whole number >= 1, got 'abc' \(on the command line\)",
    ),
    "sweep-trials-negative": Case(
        "sweep", _sweep("trials=-1"), 2, r"error: trials must be a whole number >= 1, got -1"
    ),
    "sweep-trials-zero": Case(
        "sweep", _sweep("trials=0"), 2, r"error: trials must be a whole number >= 1, got 0"
    ),
    "sweep-bad-sampler": Case(
        "sweep",
        _sweep("sampler=bogus"),
        2,
        r"error: sampler must be grid, random or tpe, got 'bogus' \(on the command line\)",
    ),
    "sweep-bad-heartbeat": Case(
        "sweep", _sweep("heartbeat=0"), 2, r"error: heartbeat must be a whole number"
    ),
    "sweep-unknown-sweep": Case("sweep", _sweep(name="nope"), 2, r"error: no sweep 'nope'"),
    "sweep-journal-is-a-folder": Case(
        "sweep",
        _sweep(_at("storage=journal://{tmp}/adir")),
        2,
        r"error: storage journal file .*adir: .*adir is a folder; name a file in it",
    ),
    "sweep-journal-folder-missing": Case(
        "sweep",
        _sweep(_at("storage=journal://{tmp}/none/s.journal")),
        2,
        r"error: storage .*: the folder .*none does not exist",
    ),
    "sweep-journal-relative": Case(
        "sweep",
        _sweep("storage=journal://rel/s.journal"),
        2,
        r"error: storage 'journal://rel/s\.journal': a journal needs an absolute path",
    ),
    "sweep-bad-url": Case(
        "sweep", _sweep("storage=postgress://u:pw@h/db"), 2, r"error: .*unknown database kind"
    ),
    "sweep-run-root-is-a-file": Case(
        "sweep",
        _sweep(_at("run.root={tmp}/afile")),
        2,
        r"error: run\.root=.*afile: .*afile is a file, not a folder",
    ),
    "evaluate-data-folder-missing": Case(
        "evaluate",
        lambda t, c: [c, "--data", t / "none", "--output-dir", t / "ev", "--no-baselines"],
        2,
        r"error: .*/none: no such folder",
    ),
    "evaluate-data-is-a-file": Case(
        "evaluate",
        lambda t, c: [c, "--data", _file("a.wav")(t), "--output-dir", t / "ev", "--no-baselines"],
        2,
        r"error: .*a\.wav: not a folder",
    ),
}


def _residual_of_long_name() -> str:
    return f"out/{residual_path(Path(LONG_NAME)).name}"


def _check_contract(case: Case, tmp: Path, before: dict, code: int, err: str, out: str, warnings: list[str]):
    assert code == case.code, err
    assert "Traceback" not in err + out, err
    lines = [line for line in err.splitlines() if line.startswith(("error:", "FAILED ", "interrupted"))]
    if case.warning or not case.line:
        assert lines == [], err
    if case.line:
        said = warnings if case.warning else lines
        assert len(said) == 1 and re.search(case.line, said[0]), (said, err)
    after = _tree(tmp)
    expected = {_residual_of_long_name() if p == "RESIDUAL" else p for p in case.created}
    assert {p: v for p, v in after.items() if p not in expected} == before, (
        "nothing else made, changed or left"
    )
    assert expected <= set(after), f"missing outputs: {expected - set(after)}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fault(name, tmp_path, trained_run, capsys, caplog):
    case = CASES[name]
    tmp = tmp_path / "case"
    tmp.mkdir()
    args = [str(a) for a in case.build(tmp, trained_run["best"])]
    before = _tree(tmp)
    caplog.set_level(logging.INFO)
    code = MAINS[case.command](args)
    captured = capsys.readouterr()
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "lightning_app" in r.name
    ]
    _check_contract(case, tmp, before, code, captured.err, captured.out, warnings)


# ----------------------------------------------------------------------------- a full disk (slow)
def _no_space_oserror(self, *args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_space_libsndfile(self, *args, **kwargs):
    raise sf.LibsndfileError(2)  # libsndfile's SFE_SYSTEM, "System error.": what a full disk gives


@pytest.mark.slow
@pytest.mark.parametrize("failure", [_no_space_oserror, _no_space_libsndfile], ids=["errno", "libsndfile"])
def test_a_full_disk_is_named_with_the_folder_and_leaves_nothing(
    tmp_path, trained_run, capsys, caplog, monkeypatch, failure
):
    tmp = tmp_path / "case"
    src = _tone(tmp)
    before = _tree(tmp)
    monkeypatch.setattr(sf.SoundFile, "write", failure)
    free = os.statvfs(tmp)
    monkeypatch.setattr(
        audio_io.shutil, "disk_usage", lambda p: type("U", (), {"free": 0, "total": free.f_blocks})()
    )
    code = denoise.main(
        [str(src), "--checkpoint", trained_run["best"], "--output-dir", str(tmp / "out"), "--no-progress"]
    )
    captured = capsys.readouterr()
    case = Case(
        "denoise",
        None,
        1,
        rf"FAILED .*a\.wav: .*out/a\.wav: could not be written: no space left on device "
        rf"\({re.escape(str(tmp / 'out'))}\)",
    )
    _check_contract(case, tmp, before, code, captured.err, captured.out, [])


# ----------------------------------------------------------------------------- signals (slow)
def _cli(module: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", f"lightning_app.{module}", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(proc: subprocess.Popen, condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_while_restoring_the_first_file_leaves_no_output_folder(tmp_path, trained_run):
    tmp = tmp_path / "case"
    src = _tone(tmp, seconds=240.0)  # seconds of work: the signal lands mid-write
    before = _tree(tmp)
    proc = _cli(
        "denoise",
        src,
        "--checkpoint",
        trained_run["best"],
        "--output-dir",
        tmp / "out" / "sub",
        "--no-progress",
    )
    _wait_for(proc, lambda: list((tmp / "out" / "sub").glob(".*.partial")), "a file being written")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    case = Case(
        "denoise", None, 143, r"interrupted \(SIGTERM\): 0 of 1 file\(s\) restored; nothing half-written left"
    )
    _check_contract(case, tmp, before, proc.returncode, err, out, [])


@pytest.mark.slow
def test_sigterm_while_training_exits_143_naming_the_checkpoint_and_a_resume_that_works(tmp_path):
    args = [
        "supervised_unet",
        f"run.root={tmp_path / 'runs'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        SMOKE,
        *FAST,
        "trainer.max_epochs=3",
        "data.train_examples_per_epoch=64",
    ]
    run = tmp_path / "runs" / "supervised_unet" / "version_0"
    proc = _cli("train", *args)
    _wait_for(proc, lambda: (run / "checkpoints" / "last.ckpt").is_file(), "the first epoch's last.ckpt")
    proc.send_signal(
        signal.SIGTERM
    )  # in the second epoch, or the third on a slow machine: two are left to stop
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("interrupted")]
    checkpoint = run / "checkpoints" / "last.ckpt"
    epochs = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1
    assert epochs < 3, "the run finished before it was signalled"
    assert line == (
        f"interrupted (SIGTERM): the last checkpoint is {checkpoint} (after epoch {epochs}); continue "
        f"with: python -m lightning_app.train supervised_unet --resume-from {run}"
    )
    assert not (run / "metrics.json").exists(), "an interrupted run is not a finished one"
    command = line.split("continue with: ", 1)[1].split()
    assert command[:3] == ["python", "-m", "lightning_app.train"]
    resumed = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "metrics.json").is_file() and not (run.parent / "version_1").exists(), (
        "the same run continued"
    )
