"""Test helpers: the real config, shrunk; generated audio files. Fixtures are in conftest.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from lightning_app import config as C

SMOKE = ["data/smoke", "model/tiny"]


def net_settings(kind: str, **changes) -> dict:
    """A network's settings as configs/defaults.yaml gives them (model.<kind>.*), with ``changes``."""
    return {**C.to_container(C.load_defaults().model[kind]), **changes}


def smoke_config(tmp_path: Path, *overrides: str, experiment: str = "supervised_unet", blocks=SMOKE):
    """The real experiment config with the smoke/tiny blocks and runs under tmp_path."""
    return C.compose(
        experiment,
        [f"run.root={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}", *overrides],
        blocks=blocks,
    )


def write_tone_file(
    path: Path, seconds: float, sample_rate: int, channels: int = 1, subtype: str = "PCM_16", seed: int = 0
) -> np.ndarray:
    """A speech-band test signal (two tones + noise) written with soundfile; returns the samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    base = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1300 * t)
    audio = np.stack(
        [base * (1 - 0.2 * c) + 0.05 * rng.standard_normal(len(t)) for c in range(channels)], axis=1
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.astype(np.float32), sample_rate, subtype=subtype)
    return audio


def slurm_job_state(job: str) -> str:
    """The state squeue reports for a job ('' once it has left the queue)."""
    return subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")
