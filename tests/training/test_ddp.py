"""A real 2-process DDP run on the CPU (gloo): metrics equal a 1-process evaluation, ranks draw different
data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_app.training.run import train
from tests.helpers import smoke_config

WORKER = Path(__file__).with_name("ddp_worker.py")
pytestmark = pytest.mark.slow


def _launch(*args, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(WORKER), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=WORKER.parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def n2n_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_ckpt")
    return train(smoke_config(root, "trainer.max_epochs=1", experiment="pure_noise2noise"))["best"]


def test_two_process_validation_equals_one_process_validation(n2n_checkpoint, tmp_path):
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"metrics{devices}.json"
        _launch("validate", devices, n2n_checkpoint, out, tmp_path / f"root{devices}")
        results[devices] = json.loads(out.read_text())
    one, two = results[1], results[2]
    # (val/loss is left out: its content term compares latents within a batch, and batches differ per rank)
    assert one["val_status/clips"] == two["val_status/clips"] == 5, (
        "5 clips on 2 ranks: none dropped, none counted twice"
    )
    for key in (
        "val/si_sdr",
        "val/si_sdr_i",
        "val/snr",
        "val/amplitude_retention",
        "val/speech_removed",
        "val/spectral_correlation",
        "val/pesq",
        "val/stoi",
        "val/leakage",
        "val/residual_noise",
    ):
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), key


def test_each_rank_draws_different_training_data_and_files_are_written_once(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _launch("fit", 2, "-", out, tmp_path / "root")
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) == len(rank1) == 4, "32 examples per epoch over 2 ranks in batches of 4"
    assert not set(rank0) & set(rank1), "the ranks drew the same batches"
    run_dirs = list((tmp_path / "root" / "runs" / "pure_noise2noise").iterdir())
    assert [p.name for p in run_dirs] == ["version_0"], "one run directory, not one per rank"
    checkpoints = sorted(p.name for p in (run_dirs[0] / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]
    assert len(list(run_dirs[0].glob("events.*"))) == 1
