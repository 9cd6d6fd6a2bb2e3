"""What the terminal shows during training: our lines, not third-party noise.

Only messages known to say nothing to a user of this suite are silenced (an advert for a hosted
logger, a deprecation inside Lightning that its next release fixes, the absent TPU); every other
warning still shows.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

#: warnings raised inside third-party code about third-party code (message patterns)
KNOWN_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's pytree helper on torch >= 2.10
    # best.ckpt and last.ckpt share checkpoints/, and a resumed run finds them there; train() itself refuses
    # to start a new run in a directory that holds one
    r"Checkpoint directory .* exists and is not empty",
)
#: Lightning's informational lines that advertise or report hardware nobody here has
_DROPPED_INFO = re.compile(r"^(💡 Tip:|TPU available: False|HPU available: False)")


class _DropKnownInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _DROPPED_INFO.match(record.getMessage())


def quiet_third_party() -> None:
    """Silence the known third-party messages above (idempotent)."""
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownInfo) for f in logger.filters):
            logger.addFilter(_DropKnownInfo())


def tensorboard_hint(runs_root: Path) -> str:
    """A command that exists and opens TensorBoard over ``runs_root`` (``run.root``), from where the user
    stands: ``make tensorboard [RUNS=...]`` in a checkout, else this Python environment's TensorBoard."""
    root = Path(runs_root)
    if root.is_absolute() and _inside(root, Path.cwd()):
        root = Path(os.path.relpath(root))
    if Path("Makefile").is_file() and Path("lightning_app").is_dir():
        return "make tensorboard" + ("" if root == Path("runs") else f" RUNS={root}")
    tensorboard = Path(sys.executable).with_name("tensorboard")
    command = str(tensorboard) if tensorboard.is_file() else (shutil.which("tensorboard") or "tensorboard")
    return f"{command} --logdir {root}"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
