"""Run directories: runs/<experiment>/version_N, the next free version and the newest one that can resume.

Kept apart from ``training.run`` so that job scripts and restores can name run folders without importing
Lightning.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

LAST = "last.ckpt"
BEST = "best.ckpt"


def experiment_dir(cfg: DictConfig) -> Path:
    return Path(cfg.run.root) / cfg.experiment


def run_versions(exp_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in exp_dir.glob("version_*"):
        m = re.fullmatch(r"version_(\d+)", p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def next_version(exp_dir: Path) -> str:
    versions = run_versions(exp_dir)
    return f"version_{versions[-1][0] + 1 if versions else 0}"


def latest_resumable(exp_dir: Path) -> Path | None:
    """The newest run directory of an experiment that has checkpoints/last.ckpt."""
    for _, path in reversed(run_versions(exp_dir)):
        if (path / "checkpoints" / LAST).is_file():
            return path
    return None
