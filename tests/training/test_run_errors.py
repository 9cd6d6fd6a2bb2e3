"""Bad configs, broken checkpoints and resumes: one line, exit 2, nothing created or changed."""

from __future__ import annotations

import random
import re
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_app import config as C
from lightning_app import train as train_mod
from lightning_app.nets import NETS
from lightning_app.systems.checkpoints import CheckpointError, load_system
from lightning_app.systems.registry import SYSTEMS
from lightning_app.training import run as training_run
from lightning_app.training.run import train
from tests.helpers import smoke_config

FAST = ("metrics.perceptual_every_n_epochs=100", "metrics.visqol_clips=0", "media.every_n_epochs=100")


def _cli(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "supervised_unet",
        f"run.root={tmp_path / 'runs'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "use=[data/smoke,model/tiny]",
        *FAST,
        *extra,
    ]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def _snapshot(root: Path) -> dict:
    return (
        {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}
    )


# ----------------------------------------------------------------------------- config values (item 9, 10)
@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs must be a whole number, got 'abc'"),
        ("trainer.max_epochs=2.5", "trainer.max_epochs must be a whole number"),
        ("data.batch_size=-1", "data.batch_size must be above 0, got -1"),
        ("data.snr_db=5", r"data.snr_db must be \[low, high\]"),
        ("data.snr_db=[20,2]", r"data.snr_db must be \[low, high\], got \[20, 2\]"),
        ("data.num_workers=-2", "data.num_workers must be 0 or more"),
        ("optim.warmup_fraction=1.5", "optim.warmup_fraction must be between 0 and 1"),
        (
            "model.spectral_unet.channels=[8,x,16]",
            "model.spectral_unet.channels must be a list of whole numbers",
        ),
        ("data.mode=clean", "data.mode=clean is not one of: supervised, noise2noise, paired, real_pairs"),
        ("model.kind=no_such_net", "model.kind=no_such_net is not one of: spectral_unet, cross_domain"),
        ("system.kind=noise2noise", "system.kind=noise2noise needs model.kind=cross_domain"),
        ("data.mode=noise2noise", "system.kind=supervised needs clean targets"),
        ("trainer.precision=fp8", "trainer.precision=fp8 is not one of"),
        ("data=3", "data is a group of settings"),
    ],
)
def test_a_bad_value_stops_the_cli_in_one_line_before_anything_is_made(tmp_path, capsys, override, message):
    for extra in ([], ["--print-config"]):
        assert train_mod.main(_cli(tmp_path, override, *extra)) == 2
        line = _one_line_error(capsys)
        assert re.search(message, line), line
    assert not (tmp_path / "runs").exists(), "nothing may be created for a config that cannot run"


def test_noise2noise_on_clean_targets_is_refused_at_composition():
    with pytest.raises(C.ConfigError, match="data.mode must be noise2noise or real_pairs"):
        C.compose("pure_noise2noise", ["data.mode=supervised"])


def test_values_of_the_right_shape_still_compose():
    cfg = C.compose(
        "supervised_unet",
        [
            "trainer.devices=[0,1]",
            "trainer.precision=bf16-mixed",
            "data.snr_db=[0,10]",
            "run.version=version_7",
            "system.init_from=x.ckpt",
            "optim.scheduler=cosine",
        ],
    )
    assert list(cfg.trainer.devices) == [0, 1] and cfg.data.snr_db[0] == 0
    assert C.compose("pure_noise2noise", ["data.mode=real_pairs"]).data.mode == "real_pairs"


def test_the_kind_tables_of_the_config_match_the_registries():
    assert sorted(C.CHOICES["system.kind"]) == sorted(SYSTEMS)
    assert sorted(C.CHOICES["model.kind"]) == sorted(NETS)


# ----------------------------------------------------------------------------- checkpoints (item 11)
def _bad_checkpoints(tmp_path: Path, good: str) -> dict[str, tuple[Path, str]]:
    tensor = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), tensor)
    junk = tmp_path / "junk.ckpt"
    # Fixed random bytes (os.urandom made the unpickler's error, and once the message, differ from run to run)
    junk.write_bytes(random.Random(4096).randbytes(4096))
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(Path(good).read_bytes()[:5000])
    mismatched = tmp_path / "mismatched.ckpt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["hyper_parameters"]["model"]["channels"] = [4, 8, 16]
    torch.save(ckpt, mismatched)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    return {
        "tensor": (tensor, "not a c2c-denoise checkpoint \\(it holds Tensor\\)"),
        "junk": (junk, "not a PyTorch checkpoint"),
        "truncated": (truncated, "truncated or corrupt"),
        "mismatched": (
            mismatched,
            "weights do not match the model its own settings describe \\(.*of another shape",
        ),
        "empty": (empty, "the file is empty"),
    }


@pytest.mark.slow
def test_every_unusable_checkpoint_is_one_line_naming_it(tmp_path, trained_run):
    for name, (path, reason) in _bad_checkpoints(tmp_path, trained_run["best"]).items():
        with pytest.raises(CheckpointError, match=reason) as caught:
            load_system(path)
        message = str(caught.value)
        assert message.startswith(str(path)) and "\n" not in message, (name, message)
        assert "weights_only=False" not in message and "weights_only" not in message, (
            "never suggest unsafe loading"
        )
    assert load_system(trained_run["best"]).kind == "supervised"


@pytest.mark.slow
def test_init_from_a_broken_checkpoint_is_a_config_error(tmp_path, trained_run, capsys):
    bad = _bad_checkpoints(tmp_path, trained_run["best"])["junk"][0]
    assert train_mod.main(_cli(tmp_path, f"system.init_from={bad}")) == 2
    assert str(bad) in _one_line_error(capsys)


# ----------------------------------------------------------------------------- resume (items 4, 12)
@pytest.fixture()
def finished_run(tmp_path):
    assert train_mod.main(_cli(tmp_path, "trainer.max_epochs=2")) == 0
    return tmp_path / "runs" / "supervised_unet" / "version_0"


@pytest.mark.slow
def test_a_corrupt_last_checkpoint_is_named_and_the_run_left_untouched(tmp_path, finished_run, capsys):
    last = finished_run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = _snapshot(finished_run)
    assert train_mod.main(_cli(tmp_path, "trainer.max_epochs=3", "--resume")) == 2
    line = _one_line_error(capsys)
    assert str(last) in line and "truncated or corrupt" in line
    # the way on is offered, not taken: the intact best.ckpt, by its path
    assert f"--resume-from {finished_run / 'checkpoints' / 'best.ckpt'}" in line
    assert _snapshot(finished_run) == before, "config.yaml, events and checkpoints must not change"


@pytest.mark.slow
def test_resume_takes_no_path_and_resume_from_does(tmp_path, finished_run, capsys):
    # --resume followed by an override: the override is an override, not a path to resume from
    assert train_mod.main(_cli(tmp_path, "--resume", "trainer.max_epochs=2")) == 0
    assert "already finished" in capsys.readouterr().out
    last = finished_run / "checkpoints" / "last.ckpt"
    assert train_mod.main(_cli(tmp_path, "trainer.max_epochs=2", "--resume-from", str(last))) == 0
    assert "already finished" in capsys.readouterr().out
    # a checkpoint given as if it were an override says what to type
    assert train_mod.main(_cli(tmp_path, "--resume", str(last))) == 2
    assert f"--resume-from {last}" in _one_line_error(capsys)


@pytest.mark.slow
def test_resume_from_a_checkpoint_outside_a_run_points_to_init_from(tmp_path, finished_run, capsys):
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes((finished_run / "checkpoints" / "best.ckpt").read_bytes())
    assert train_mod.main(_cli(tmp_path, "--resume-from", str(loose))) == 2
    line = _one_line_error(capsys)
    assert "not inside a run directory" in line and f"system.init_from={loose}" in line


# ----------------------------------------------------------------------------- cosine re-plan (item 5)
class _StopAfter(L.Callback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = trainer.current_epoch + 1 >= self.epochs


class _LearningRates(L.Callback):
    def __init__(self, seen: list):
        self.seen = seen

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.global_step, trainer.optimizers[0].param_groups[0]["lr"]))


@pytest.mark.slow
def test_a_longer_resumed_cosine_run_is_re_planned_continuously_to_its_floor(tmp_path, monkeypatch):
    lr = 1e-3
    args = (*FAST, "optim.scheduler=cosine", f"optim.lr={lr}", "data.train_examples_per_epoch=16")
    seen: list = []
    original = training_run.build_callbacks
    monkeypatch.setattr(
        training_run,
        "build_callbacks",
        lambda cfg, d: original(cfg, d) + [_LearningRates(seen), _StopAfter(2)],
    )
    train(smoke_config(tmp_path, "trainer.max_epochs=4", *args))  # interrupted after 2 of 4 epochs
    monkeypatch.setattr(
        training_run, "build_callbacks", lambda cfg, d: original(cfg, d) + [_LearningRates(seen)]
    )
    result = train(smoke_config(tmp_path, "trainer.max_epochs=6", *args), resume="latest")  # and now 6 epochs

    steps = [s for s, _ in seen]
    rates = [r for _, r in seen]
    assert steps == list(range(24)), steps
    assert rates[0] == pytest.approx(lr)
    assert rates[8] == pytest.approx(lr * 0.5, rel=1e-6), (
        "at the interruption: half way down the 4-epoch cosine"
    )
    drops = [a - b for a, b in zip(rates, rates[1:], strict=False)]
    assert min(drops) > -1e-12, f"the rate rose again at step {drops.index(min(drops)) + 1}: {rates}"
    assert max(drops[8:]) < max(drops[:8]), (
        "re-planned over the longer run, the rate falls more gently, never jumps"
    )
    final = torch.load(result["last"], weights_only=True)["optimizer_states"][0]["param_groups"][0]["lr"]
    assert final == pytest.approx(0.0, abs=1e-12), "the re-planned cosine ends at its floor at the new end"
