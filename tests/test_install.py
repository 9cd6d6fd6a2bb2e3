"""`pip install .` (not editable) gives commands that work from any folder: configs, experiments and the
bundled model travel inside the wheel."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

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
def installed(tmp_path_factory):
    """A wheel built from this checkout's files, installed into a fresh venv that borrows the test venv's
    dependencies (a .pth line) so nothing is downloaded; returns the venv's bin folder."""
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
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((tmp / "dist").glob("c2c_denoise-*.whl"))
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    return venv / "bin"


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
