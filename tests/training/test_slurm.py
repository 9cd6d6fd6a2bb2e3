"""Slurm: the rendered job script, and a real single-node Slurm that trains, is requeued and resumes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from lightning_app.training import slurm as S
from tests.helpers import slurm_job_state, wait_until

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ["use=[data/smoke,model/tiny]", "trainer.enable_progress_bar=false"]


def test_rendered_script_runs_one_task_per_gpu_requeues_and_resumes(tmp_path):
    path, script = S.submit(
        "pure_noise2noise",
        [f"run.root={tmp_path}", "trainer.max_epochs=3"],
        cluster_overrides=["nodes=2", "gpus_per_node=8", "partition=gpu", "account=lab", "time=01:00:00"],
        dry_run=True,
    )
    assert not path.parent.exists(), "a dry run creates nothing"
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --time=01:00:00",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@180",
        f"#SBATCH --output={path.parent.resolve()}/slurm-%j.out",
    ):
        assert line in script, line
    command = next(line for line in script.splitlines() if line.startswith("srun "))
    for part in (
        "-m lightning_app.train pure_noise2noise",
        "--use=trainer/ddp",
        "trainer.num_nodes=2",
        "trainer.devices=8",
        "trainer.strategy=ddp",
        "run.version=version_0",
        "--resume-if-exists",
    ):
        assert part in command, part
    assert "scontrol requeue $SLURM_JOB_ID' USR1" in script
    with pytest.raises(S.C.ConfigError, match="unknown cluster setting"):
        S.submit("pure_noise2noise", cluster_overrides=["gpus=8"], dry_run=True)
    with pytest.raises(S.C.ConfigError, match="unknown config key"):
        S.submit("pure_noise2noise", ["trainer.max_epoch=3"], dry_run=True)


@pytest.mark.slow
def test_submitted_job_trains_with_two_ranks_and_resumes_after_a_requeue(slurm, tmp_path):
    epochs = 6  # long enough that the signal lands mid-run, not after the last epoch
    path, job = S.submit(
        "supervised_unet",
        [
            f"run.root={tmp_path}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"trainer.max_epochs={epochs}",
            "data.train_examples_per_epoch=64",
            *SMOKE,
        ],
        cluster_overrides=["gpus_per_node=0", "tasks_per_node=2", "cpus_per_task=1", "time=00:15:00"],
    )
    run = path.parent
    last = run / "checkpoints" / "last.ckpt"
    wait_until(last.is_file, 180, "the first checkpoint")
    first = torch.load(last, weights_only=True)["global_step"]
    # What Slurm does before a time limit: USR1 to the batch shell, which requeues the job.
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    wait_until(lambda: slurm_job_state(job) == "PENDING", 120, "the job to be requeued")
    # A requeued job waits ~2 minutes before it is eligible again; the test need not.
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
    wait_until(
        lambda: "restart 1" in (run / f"slurm-{job}.out").read_text(), 240, "the requeued job to start"
    )
    wait_until(
        lambda: (run / "metrics.json").is_file() and not slurm_job_state(job), 240, "the job to finish"
    )

    log = (run / f"slurm-{job}.out").read_text()
    assert "requeueing job" in log and "resuming" in log, log[-2000:]
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"], (
        "same run directory after the requeue"
    )
    ckpt = torch.load(last, weights_only=True)
    steps_per_epoch = 64 // 2 // 4  # 64 examples per epoch over 2 ranks, batches of 4
    assert first < epochs * steps_per_epoch, "the signal came after training had ended"
    assert ckpt["global_step"] == epochs * steps_per_epoch, "no step lost or counted twice"


def test_sweep_array_script_starts_workers_on_one_study(tmp_path):
    path, script = S.submit_sweep(
        "pure_noise2noise", "loss_weights", 3, [f"run.root={tmp_path}", "trials=12"], dry_run=True
    )
    assert path.parent == (tmp_path / "sweeps" / "pure_noise2noise-loss_weights").resolve()
    for line in ("#SBATCH --array=0-2", "#SBATCH --gpus-per-node=1", "#SBATCH --requeue"):
        assert line in script, line
    assert (
        "-m lightning_app.sweep pure_noise2noise loss_weights --use=trainer/gpu" in script
        and "trials=12" in script
    )
    with pytest.raises(S.C.ConfigError, match="no sweep 'nope'"):
        S.submit_sweep("pure_noise2noise", "nope", 2, dry_run=True)


@pytest.mark.slow
def test_a_sweep_job_array_shares_one_study(slurm, tmp_path):
    import optuna

    path, job = S.submit_sweep(
        "supervised_unet",
        "learning_rate",
        2,
        [
            f"run.root={tmp_path}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "trials=4",
            "sampler=random",
            "overrides=[]",
            "trainer.max_epochs=1",
            *SMOKE,
        ],
        cluster_overrides=["gpus_per_node=0", "cpus_per_task=1", "time=00:15:00"],
    )
    wait_until(lambda: not slurm_job_state(job), 300, "the sweep workers to finish")
    study = optuna.load_study(
        study_name="supervised_unet-learning_rate", storage=f"sqlite:///{path.parent / 'study.db'}"
    )
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4, [
        t.state for t in study.get_trials()
    ]  # exactly: the workers claim trials under a lock
    logs = sorted(p.name for p in path.parent.glob("worker-*.out"))
    assert len(logs) == 2, logs
    assert (path.parent / "trials.csv").is_file()
