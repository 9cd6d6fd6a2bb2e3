"""The traps a new user falls into at the command line, each answered in one line that says what works."""

import re
import subprocess
from pathlib import Path

import pytest

from lightning_app import denoise
from tests.helpers import write_tone_file

REPO = Path(__file__).resolve().parents[1]


def _make(*args: str) -> subprocess.CompletedProcess:
    """make with a -n dry run: the checks run, nothing is built or trained."""
    return subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True, text=True)


def test_an_override_given_to_make_is_refused_with_the_args_form():
    done = _make("train", "EXP=supervised_unet", "trainer.max_epochs=3")
    assert done.returncode != 0 and "lightning_app.train" not in done.stdout, (
        "it must not run with the override lost"
    )
    assert 'put overrides in ARGS, e.g. make train ARGS="trainer.max_epochs=3"' in done.stderr
    hydra = _make("train", "+trainer.max_epochs=3")
    assert 'ARGS="trainer.max_epochs=3"' in hydra.stderr


def test_a_misspelt_make_variable_is_refused_naming_the_real_ones():
    done = _make("train", "EPX=archive_fullband")
    assert done.returncode != 0 and "EPX is not a variable of this Makefile" in done.stderr
    assert " EXP " in done.stderr


@pytest.mark.slow
def test_every_variable_the_makefile_reads_is_documented_in_help():
    used = set(re.findall(r"\$\(([A-Z][A-Z_0-9]*)\)", (REPO / "Makefile").read_text()))
    internal = {
        "PY",
        "VENV",
        "STAMP",
        "TRAIN_FLAGS",
        "MAKEFILE_LIST",
        "MAKECMDGOALS",
        "KNOWN_VARIABLES",
        "STRAY",
        "STRAY1",
    }
    shown = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True).stdout
    documented = {
        line.split()[0]
        for line in shown.splitlines()
        if line.startswith("  ") and not line.startswith("  make")
    }
    assert {"EXP", "ARGS", "INPUTS"} <= used - internal, "the scan must find the variables"
    assert used - internal <= documented, f"not in make help: {sorted(used - internal - documented)}"
    assert {"TB_PORT", "RUNS", "WORKERS"} <= documented


def test_make_denoise_without_inputs_says_so_and_names_with_spaces_can_be_quoted():
    done = _make("denoise")
    assert done.returncode != 0 and "make denoise needs INPUTS" in done.stderr
    quoted = _make("denoise", "INPUTS='side a.wav' b.wav", "OUT=/tmp/o")
    assert "'side a.wav' b.wav" in quoted.stdout and "--checkpoint" not in quoted.stdout, quoted.stdout


@pytest.mark.slow
def test_a_txt_list_gives_files_whose_names_have_spaces(tmp_path, trained_run):
    write_tone_file(tmp_path / "in" / "side a.wav", 0.4, 16000)
    write_tone_file(tmp_path / "in" / "b side.flac", 0.4, 16000)
    (tmp_path / "in" / "list.txt").write_text("# transfers of 1931\nside a.wav\n\nb side.flac\n")
    code = denoise.main(
        [
            str(tmp_path / "in" / "list.txt"),
            "--checkpoint",
            str(trained_run["best"]),
            "-o",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b side.flac", "side a.wav"]


@pytest.mark.parametrize("target", ["train", "denoise INPUTS=x.wav", "evaluate", "sweep", "tensorboard"])
def test_known_variables_pass_the_check(target):
    done = _make(*target.split(), "ARGS=--help", "OUT=o", "RUNS=r", "TB_PORT=7000")
    assert "not a variable" not in done.stderr and "looks like a config override" not in done.stderr, (
        done.stderr
    )


@pytest.mark.parametrize(
    "argv,answer",
    [
        (["--trainer.max_epochs=3"], "here overrides are key=value without dashes: trainer.max_epochs=3"),
        (["--trainer.max_epochs", "3"], "without dashes: trainer.max_epochs=3"),
        (
            ["--config", "mine.yaml"],
            "as the first argument: python -m lightning_app.train my_experiment.yaml",
        ),
        (["+trainer.max_epochs=3"], "so no '+': trainer.max_epochs=3"),
        (["++optim.lr=1e-3"], "so no '+': optim.lr=1e-3"),
        (["-m", "optim.lr=1e-3,3e-3"], "make sweep EXP=<experiment>"),
        (["~data.snr_db"], "keys cannot be removed here"),
        (["hydra.run.dir=outputs"], "runs go to run.root"),
    ],
)
def test_lightningcli_and_hydra_forms_get_the_form_that_works_here_in_one_line(argv, answer, capsys):
    from lightning_app import train

    with pytest.raises(SystemExit) as stop:
        train.parse_args(["supervised_unet", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and answer in err and len(err.strip().splitlines()) == 1, err


def test_an_experiment_may_be_a_yaml_file_of_ones_own(tmp_path):
    from lightning_app import config as C

    mine = tmp_path / "tape_hiss_only.yaml"
    mine.write_text("use: [variant/supervised]\ndata:\n  snr_db: [0, 6]\ntrainer:\n  max_epochs: 2\n")
    cfg = C.compose(str(mine))
    assert (
        cfg.experiment == "tape_hiss_only" and list(cfg.data.snr_db) == [0, 6] and cfg.trainer.max_epochs == 2
    )
    with pytest.raises(C.ConfigError, match="experiment file not found"):
        C.compose(str(tmp_path / "missing.yaml"))
    with pytest.raises(C.ConfigError, match="or a YAML file of your own"):
        C.compose("no_such_experiment")
