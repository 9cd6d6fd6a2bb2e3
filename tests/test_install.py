"""`pip install .` (not editable) gives commands that work from any folder: configs, experiments and the
bundled model travel inside the wheel."""

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import write_tone_file

REPO = Path(__file__).resolve().parents[1]


def _run(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if check and done.returncode:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from this checkout's files."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know which files belong to the project")
    tmp = tmp_path_factory.mktemp("wheel")
    files = _run("git", "-C", REPO, "ls-files", "--cached", "--others", "--exclude-standard").stdout.split(
        "\n"
    )
    source = tmp / "source"
    for name in filter(None, files):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        tmp / "dist",
        source,
    )
    return next((tmp / "dist").glob("c2c_denoise-*.whl"))


def _venv_with(wheel: Path, venv: Path, dependencies: Path) -> Path:
    """``wheel`` installed into a fresh venv whose dependencies are the packages in ``dependencies`` (a .pth
    line), so nothing is downloaded; returns the venv's bin folder."""
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    (site / "borrowed_dependencies.pth").write_text(f"{dependencies}\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    return venv / "bin"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel in a fresh venv that borrows every package of the test venv (the full install)."""
    return _venv_with(wheel, tmp_path_factory.mktemp("full") / "venv", Path(sysconfig.get_paths()["purelib"]))


def _light_closure() -> dict:
    """The distributions the light install pulls in: pyproject's dependencies and theirs, as installed."""
    from importlib import metadata

    from packaging.requirements import Requirement

    with open(REPO / "pyproject.toml", "rb") as f:
        todo = list(tomllib.load(f)["project"]["dependencies"])
    found = {}
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        dist = metadata.distribution(requirement.name)
        if dist.metadata["Name"].lower() not in found:
            found[dist.metadata["Name"].lower()] = dist
            todo += dist.requires or []
    return found


@pytest.fixture(scope="module")
def light(wheel, tmp_path_factory):
    """The wheel in a fresh venv with only the light install's dependencies (linked from the test venv):
    (bin folder, MiB on disk of the dependencies and the installed package)."""
    tmp = tmp_path_factory.mktemp("light")
    packages = tmp / "packages"
    packages.mkdir()
    size, closure = 0, _light_closure()
    assert "torch" not in closure, "the light install pulls in torch"
    for dist in closure.values():
        for file in dist.files or []:
            if file.parts[0] == "..":  # scripts outside site-packages
                continue
            top, where = packages / file.parts[0], Path(dist.locate_file(file.parts[0]))
            if not top.exists() and where.exists():
                top.symlink_to(where)
            size += (
                Path(dist.locate_file(file)).stat().st_size if Path(dist.locate_file(file)).is_file() else 0
            )
    bin_dir = _venv_with(wheel, tmp / "venv", packages)
    package = Path(
        _run(bin_dir / "python", "-c", "import lightning_app; print(lightning_app.__file__)").stdout.strip()
    )
    size += sum(f.stat().st_size for f in package.parent.rglob("*") if f.is_file())
    return bin_dir, size / 2**20


@pytest.mark.slow
def test_an_installed_wheel_composes_experiments_outside_a_checkout(installed, tmp_path):
    done = _run(installed / "c2c-train", "archive_fullband", "--print-config", cwd=tmp_path)
    assert "experiment: archive_fullband" in done.stdout and "sample_rate: 44100" in done.stdout
    where = _run(
        installed / "python",
        "-c",
        "import lightning_app, lightning_app.config as C; print(lightning_app.__file__); print(C.CONFIG_DIR)",
        cwd=tmp_path,
    ).stdout.split()
    assert str(REPO) not in where[0], "the installed package must be the one imported"
    assert where[1].endswith("lightning_app/_data/configs")


@pytest.mark.slow
def test_an_installed_wheel_restores_with_its_bundled_model(installed, tmp_path):
    write_tone_file(tmp_path / "take.wav", 0.5, 44100, channels=2)
    done = _run(installed / "c2c-denoise", "take.wav", "-o", "out", "--no-progress", cwd=tmp_path)
    assert "the bundled archive model" in done.stderr + done.stdout
    assert (tmp_path / "out" / "take.wav").is_file()


@pytest.mark.slow
def test_a_project_folder_of_experiments_is_found_from_the_working_directory(installed, tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "my_tape.yaml").write_text(
        "use: [variant/supervised]\ndata:\n  snr_db: [0, 10]\n"
    )
    done = _run(installed / "c2c-train", "my_tape", "--print-config", cwd=tmp_path)
    assert "experiment: my_tape" in done.stdout and "- 0" in done.stdout


@pytest.mark.slow
def test_the_light_install_restores_and_reports_without_torch(light, tmp_path):
    bin_dir, megabytes = light
    done = _run(bin_dir / "python", "-c", "import torch", check=False)
    assert done.returncode != 0 and "No module named 'torch'" in done.stderr, "torch is importable"
    write_tone_file(tmp_path / "take.wav", 2.0, 48000, channels=2)
    done = _run(bin_dir / "c2c-denoise", "take.wav", "-o", "out", "--no-progress", "--report", cwd=tmp_path)
    assert "ONNX Runtime" in done.stderr and (tmp_path / "out" / "take.wav").is_file()
    assert (tmp_path / "out" / "report.html").is_file(), done.stderr
    restored, rate = sf.read(tmp_path / "out" / "take.wav")
    assert rate == 48000 and restored.shape == (96000, 2) and np.all(np.isfinite(restored))
    print(f"light install: {megabytes:.0f} MiB on disk")  # the closing figure; -s shows it
    assert megabytes <= 400, f"the light install takes {megabytes:.0f} MiB"


@pytest.mark.slow
def test_the_light_install_says_which_extra_a_suite_command_needs(light, tmp_path):
    bin_dir, _ = light
    for command in ("c2c-train --help", "c2c-export"):
        name, *args = command.split()
        done = _run(bin_dir / name, *args, check=False, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "c2c-denoise[train]" in lines[0], done.stderr
