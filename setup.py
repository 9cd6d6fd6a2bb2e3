"""Build step that pyproject.toml cannot express: an installed wheel carries configs/, experiments/ and
models/ inside the package (lightning_app/_data/), so `pip install .` works outside a checkout.
Everything else about the package is in pyproject.toml; lightning_app/config.py finds the copies."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RESOURCES = ("configs", "experiments", "models")


class BuildPyWithResources(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "lightning_app" / "_data"
        for name in RESOURCES:
            if Path(name).is_dir():
                shutil.copytree(
                    name,
                    target / name,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.partial"),
                )


setup(cmdclass={"build_py": BuildPyWithResources})
