"""Where the suite's own files are: configs/, experiments/ and models/ (the bundled archive model).

In a checkout (and an editable install) they sit next to the package. An installed wheel carries copies
inside the package (``lightning_app/_data/``, put there by setup.py's build step), so ``pip install .``
works from any folder. A folder of your own comes first: ``C2C_HOME`` (a folder holding any of
configs/, experiments/, models/), else the working directory, where a ``configs/defaults.yaml`` or an
``experiments/`` folder marks a project of yours. Each folder is looked up on its own, so a project
may hold only experiments/ and still use the suite's configs.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE_TREE = PACKAGE.parent
PACKAGED = PACKAGE / "_data"
#: what marks each folder as the real one (an empty folder of that name is not)
MARKERS = {"configs": "defaults.yaml", "experiments": "*.yaml", "models": "*.ckpt"}


def candidates(name: str) -> list[Path]:
    """The places ``name`` (configs, experiments, models) is looked for, first wins."""
    places = [Path(os.environ["C2C_HOME"]) / name] if os.environ.get("C2C_HOME") else []
    return [*places, Path.cwd() / name, SOURCE_TREE / name, PACKAGED / name]


def folder(name: str) -> Path:
    """The first of ``candidates(name)`` that holds what marks it; the source tree's if none does (so an
    error names the place a checkout would have)."""
    for place in candidates(name):
        if place.is_dir() and any(place.glob(MARKERS[name])):
            return place
    return SOURCE_TREE / name
