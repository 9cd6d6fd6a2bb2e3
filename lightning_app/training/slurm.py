"""Slurm job scripts: render and submit training runs and sweep workers (one task per GPU under srun).

Preemption and time limits: Slurm sends the batch shell USR1 ``signal_seconds`` before the limit, the shell
requeues the job, and the requeued job resumes from its run directory's last.ckpt. The command line is
``lightning_app.submit``.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lightning_app import config as C
from lightning_app.training.run_dirs import experiment_dir, next_version

log = logging.getLogger(__name__)
CLUSTER = C.CONFIG_DIR / "cluster" / "slurm.yaml"


def site_and_preamble(cluster: DictConfig, gpus: int, rendered_by: str) -> list[str]:
    """The #SBATCH lines every script shares (GPUs, partition, account, extras) and the shell's start."""
    lines = [f"#SBATCH --gpus-per-node={gpus}"] if gpus else []
    if cluster.partition:
        lines.append(f"#SBATCH --partition={cluster.partition}")
    if cluster.account:
        lines.append(f"#SBATCH --account={cluster.account}")
    lines += [f"#SBATCH {extra}" for extra in cluster.sbatch_extra]
    return [
        *lines,
        "",
        f"# Rendered by {rendered_by}",
        "set -uo pipefail",
        f"cd {shlex.quote(str(C.PROJECT_ROOT))}",
        *cluster.setup,
    ]


def render(
    cluster: DictConfig, experiment: str, overrides: list[str], blocks: list[str], run_dir: Path, python: str
) -> str:
    gpus = int(cluster.gpus_per_node)
    tasks = int(cluster.tasks_per_node or gpus or 1)
    devices = [f"trainer.num_nodes={cluster.nodes}", f"trainer.devices={tasks}"]
    if gpus == 0:
        devices.append("trainer.accelerator=cpu")
    elif not any(b.startswith("trainer/") for b in blocks):
        blocks = ["trainer/ddp", *blocks]  # GPUs: bf16-mixed DDP unless a trainer block says otherwise
    if int(cluster.nodes) * tasks > 1:
        devices.append("trainer.strategy=ddp")
    train_args = [
        experiment,
        *(f"--use={b}" for b in blocks),
        *overrides,
        *devices,
        f"run.root={run_dir.parent.parent}",
        f"run.version={run_dir.name}",
        "--resume-if-exists",
    ]
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=c2c-{experiment}",
        f"#SBATCH --nodes={cluster.nodes}",
        f"#SBATCH --ntasks-per-node={tasks}",
        f"#SBATCH --cpus-per-task={cluster.cpus_per_task}",
        f"#SBATCH --time={cluster.time}",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        # B: signals the batch shell only; it requeues, and Slurm then stops the srun steps.
        f"#SBATCH --signal=B:USR1@{cluster.signal_seconds}",
    ]
    lines += site_and_preamble(
        cluster, gpus, "lightning_app.submit; a requeued job runs this again and resumes from last.ckpt."
    )
    lines += [
        'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date)"',
        "trap 'echo \"time limit near: requeueing job $SLURM_JOB_ID\"; scontrol requeue $SLURM_JOB_ID' USR1",
        # In the background, so the shell can run its USR1 trap while training goes on. A rank that fails
        # ends the step: the others would wait in DDP for it until the time limit, holding the GPUs.
        f"srun --kill-on-bad-exit=1 {shlex.quote(python)} -m lightning_app.train "
        f"{' '.join(shlex.quote(a) for a in train_args)} &",
        "wait $!",
        "status=$?",
        "wait",  # a requeue interrupts the first wait; let the step wind down
        "exit $status",
        "",
    ]
    return "\n".join(lines)


def render_sweep(
    cluster: DictConfig,
    experiment: str,
    sweep: str,
    workers: int,
    overrides: list[str],
    blocks: list[str],
    directory: Path,
    python: str,
) -> str:
    """A job array of ``workers`` sweep workers sharing one Optuna study; each runs trials one after
    another."""
    gpus = min(int(cluster.gpus_per_node), 1)
    if gpus and not any(b.startswith("trainer/") for b in blocks):
        blocks = ["trainer/gpu", *blocks]
    args = [
        experiment,
        sweep,
        *(f"--use={b}" for b in blocks),
        *overrides,
        *([] if gpus else ["trainer.accelerator=cpu"]),
    ]
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=c2c-sweep-{experiment}-{sweep}",
        f"#SBATCH --array=0-{workers - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={cluster.cpus_per_task}",
        f"#SBATCH --time={cluster.time}",
        f"#SBATCH --output={directory}/worker-%A_%a.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",  # a preempted worker comes back; the study retries its unfinished trial
    ]
    lines += site_and_preamble(
        cluster, gpus, "lightning_app.submit --sweep: every array task is one worker on the same study."
    )
    lines += [
        'echo "sweep worker $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname) at $(date)"',
        f"exec {shlex.quote(python)} -m lightning_app.sweep {' '.join(shlex.quote(a) for a in args)}",
        "",
    ]
    return "\n".join(lines)


def submit_sweep(
    experiment: str,
    sweep: str,
    workers: int,
    overrides: list[str] = (),
    blocks: list[str] = (),
    cluster_overrides: list[str] = (),
    dry_run: bool = False,
    python: str = sys.executable,
) -> tuple[Path, str]:
    from lightning_app.training import study_storage  # Optuna and SQLAlchemy: only sweeps need them
    from lightning_app.training.sweeps import load_sweep, split_overrides

    cluster = cluster_config(cluster_overrides)
    sweep_fields, run_overrides = split_overrides(overrides)
    sweep_cfg = load_sweep(sweep, sweep_fields)  # a bad sweep fails here, not in the queue
    cfg = C.compose(experiment, run_overrides, blocks=list(blocks))
    directory = (Path(cfg.run.root) / "sweeps" / f"{experiment}-{sweep}").resolve()
    storage = study_storage.parse(sweep_cfg.storage, directory)
    script = render_sweep(
        cluster, experiment, sweep, workers, list(overrides), list(blocks), directory, python
    )
    if dry_run:
        return directory / "submit-sweep.sbatch", script
    study_storage.check(storage)  # an unreachable database fails here, not in every array task
    if any(o.startswith("storage=") and study_storage.masked(o) != o for o in sweep_fields):
        log.warning(
            "warning: the storage URL's password is written into %s and shows in the process list; "
            "keep it in ~/.pgpass or PGPASSWORD instead (docs/cluster.md, Sweeps)",
            directory / "submit-sweep.sbatch",
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "submit-sweep.sbatch"
    path.write_text(script)
    return path, sbatch(path)


def cluster_config(cluster_overrides) -> DictConfig:
    cluster = OmegaConf.load(CLUSTER)
    unknown = sorted({o.split("=", 1)[0] for o in cluster_overrides} - set(cluster))
    if unknown:
        raise C.ConfigError(f"unknown cluster setting(s) {unknown}; known: {sorted(cluster)}")
    cluster.merge_with(OmegaConf.from_dotlist(list(cluster_overrides)))
    return cluster


def sbatch(path: Path, *options: str) -> str:
    done = subprocess.run(["sbatch", "--parsable", *options, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def submit(
    experiment: str,
    overrides: list[str] = (),
    blocks: list[str] = (),
    cluster_overrides: list[str] = (),
    dry_run: bool = False,
    python: str = sys.executable,
) -> tuple[Path, str]:
    """Render the script into a new run directory and submit it; returns (script, sbatch's answer)."""
    cluster = cluster_config(cluster_overrides)
    cfg = C.compose(experiment, list(overrides), blocks=list(blocks))  # fails here, not in the queue
    if cfg.stages:
        raise C.ConfigError(f"{experiment} is a sequence of stages; submit each stage's experiment")
    exp_dir = experiment_dir(cfg)
    run_dir = exp_dir / next_version(exp_dir)
    script = render(cluster, experiment, list(overrides), list(blocks), run_dir.resolve(), python)
    if dry_run:
        return run_dir / "submit.sbatch", script
    run_dir.mkdir(parents=True)
    path = run_dir / "submit.sbatch"
    path.write_text(script)
    return path, sbatch(path)
