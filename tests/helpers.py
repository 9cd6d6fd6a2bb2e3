"""Test helpers: the real config, shrunk; generated audio files. Fixtures are in conftest.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from lightning_app import config as C
from lightning_app.data import audio_io
from lightning_app.data import corpus as K

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


def make_corpus(root: Path, seconds: float = 3.0, rate: int = 44100) -> Path:
    """A stand-in corpus: two 'tracks' and two 'speakers' per split, tones with a moving envelope."""
    rows = []
    t = np.arange(int(seconds * rate)) / rate
    for s, split in enumerate(K.SPLITS):
        for content in K.CONTENTS:
            for g in range(2):
                f0 = 150 + 60 * g + 20 * s + (300 if content == "music" else 0)
                audio = 0.2 * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * (1 + g) * t))
                rel = f"{split}/{content}/pkg/{content}{g}.flac"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                audio_io.write(root / rel, audio.astype(np.float32), rate, subtype="PCM_16")
                rows.append(
                    {
                        "file": rel,
                        "split": split,
                        "content": content,
                        "package": "pkg",
                        "licence": "CC0-1.0",
                        "group": f"pkg:{split}{content}{g}",
                        "seconds": f"{seconds:.2f}",
                        "sample_rate": rate,
                        "sources": rel,
                    }
                )
    K._write_manifest(root / K.MANIFEST, rows)
    return root


def perturbed_checkpoint(tmp_path: Path, experiment: str, *overrides: str) -> Path:
    """A checkpoint of ``experiment``'s tiny system with every weight moved off its initial value (the mask
    head starts at zero, which would hide weights a loader or an export dropped)."""
    import torch

    from lightning_app.training.run import build_system

    system = build_system(smoke_config(tmp_path, *overrides, experiment=experiment))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in system.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / f"{experiment}.ckpt"
    torch.save(
        {
            "state_dict": system.state_dict(),
            "hyper_parameters": dict(system.hparams),
            "system_kind": system.kind,
        },
        path,
    )
    return path


class Recorder:
    """Stands in for the LightningModule: records what the callbacks log."""

    def __init__(self):
        import torch

        self.device = torch.device("cpu")
        self.logged = {}

    def log(self, name, value, **_):
        self.logged[name] = float(value)

    def log_dict(self, values, **_):
        self.logged.update({k: float(v) for k, v in values.items()})
