"""Shared fixtures: a tiny trained checkpoint (helpers for configs and audio files are in
tests/helpers.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from tests.helpers import smoke_config

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One tiny supervised run (1 epoch), shared by the tests that only read its outputs."""
    from lightning_app.training.run import train

    root = tmp_path_factory.mktemp("trained")
    cfg = smoke_config(root, "trainer.max_epochs=1")
    return train(cfg)


@pytest.fixture(scope="session")
def slurm():
    """A single-node Slurm (scripts/slurm_single_node.sh starts it, or says why it cannot): else the test
    skips."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_single_node.sh")], capture_output=True, text=True
    )
    if done.returncode == 3:
        pytest.skip(f"no Slurm here: {done.stderr.strip() or done.stdout.strip()}")
    assert done.returncode == 0, done.stderr
