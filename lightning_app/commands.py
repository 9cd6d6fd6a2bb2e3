"""The installed commands (c2c-*): each runs its command line. In the light install (`pip install
c2c-denoise`, no torch) a command of the full suite says in one line which extra it needs, not a traceback.
"""

from __future__ import annotations

import importlib
import sys

#: what the light install leaves out; a command that needs one of these needs the `train` extra
FULL_SUITE = {
    "torch",
    "torchaudio",
    "lightning",
    "torchmetrics",
    "onnx",
    "matplotlib",
    "optuna",
    "pesq",
    "pystoi",
}


def _run(name: str) -> int:
    try:
        main = importlib.import_module(f"lightning_app.{name}").main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in FULL_SUITE:
            raise
        print(
            f"error: c2c-{name} needs the full suite, which this install lacks ({exc.name}): "
            "pip install 'c2c-denoise[train]'",
            file=sys.stderr,
        )
        return 2
    return main()


def train() -> int:
    return _run("train")


def denoise() -> int:
    return _run("denoise")


def evaluate() -> int:
    return _run("evaluate")


def sweep() -> int:
    return _run("sweep")


def corpus() -> int:
    return _run("corpus")


def export() -> int:
    return _run("export")
