"""Submit a training run to Slurm: render an sbatch script into a fresh run directory, then sbatch it.

    python -m lightning_app.submit EXP [key=value ...] [--nodes N] [--gpus-per-node G] [--partition P]
                                   [--account A] [--time HH:MM:SS] [--use GROUP/NAME] [--dry-run]
    python -m lightning_app.submit EXP --sweep SWEEP --workers N [...]   (a job array of sweep workers)

The job runs one task per GPU under ``srun`` (Lightning reads the ranks from Slurm) on
``--nodes`` nodes with DDP. Each submission gets its own run directory, runs/<EXP>/version_N,
which holds the script, the Slurm log and everything the run writes. Preemption and time
limits: Slurm sends the batch shell USR1 ``signal_seconds`` before the limit, the shell
requeues the job (``--requeue``), and the requeued job starts with ``--resume-if-exists``:
it resumes from that directory's last.ckpt (same version, same TensorBoard run; the steps
since the last checkpoint are redone, never counted twice).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lightning_app import config as C
from lightning_app.train import experiment_dir, next_version

CLUSTER = C.PROJECT_ROOT / "configs" / "cluster" / "slurm.yaml"


def _site_and_preamble(cluster: DictConfig, gpus: int, rendered_by: str) -> list[str]:
    """The #SBATCH lines every script shares (GPUs, partition, account, extras) and the shell's start."""
    lines = [f"#SBATCH --gpus-per-node={gpus}"] if gpus else []
    if cluster.partition:
        lines.append(f"#SBATCH --partition={cluster.partition}")
    if cluster.account:
        lines.append(f"#SBATCH --account={cluster.account}")
    lines += [f"#SBATCH {extra}" for extra in cluster.sbatch_extra]
    return [*lines, "", f"# Rendered by {rendered_by}", "set -uo pipefail", f"cd {shlex.quote(str(C.PROJECT_ROOT))}",
            *cluster.setup]


def render(cluster: DictConfig, experiment: str, overrides: list[str], blocks: list[str], run_dir: Path,
           python: str) -> str:
    gpus = int(cluster.gpus_per_node)
    tasks = int(cluster.tasks_per_node or gpus or 1)
    devices = [f"trainer.num_nodes={cluster.nodes}", f"trainer.devices={tasks}"]
    if gpus == 0:
        devices.append("trainer.accelerator=cpu")
    elif not any(b.startswith("trainer/") for b in blocks):
        blocks = ["trainer/ddp", *blocks]  # GPUs: bf16-mixed DDP unless a trainer block says otherwise
    if int(cluster.nodes) * tasks > 1:
        devices.append("trainer.strategy=ddp")
    train_args = [experiment, *(f"--use={b}" for b in blocks), *overrides, *devices,
                  f"run.root={run_dir.parent.parent}", f"run.version={run_dir.name}", "--resume-if-exists"]
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
    lines += _site_and_preamble(cluster, gpus, "lightning_app.submit; a requeued job runs this again and resumes "
                                                "from last.ckpt.")
    lines += [
        'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date)"',
        "trap 'echo \"time limit near: requeueing job $SLURM_JOB_ID\"; scontrol requeue $SLURM_JOB_ID' USR1",
        # In the background, so the shell can run its USR1 trap while training goes on.
        f"srun {shlex.quote(python)} -m lightning_app.train {' '.join(shlex.quote(a) for a in train_args)} &",
        "wait $!",
        "status=$?",
        "wait",  # a requeue interrupts the first wait; let the step wind down
        "exit $status",
        "",
    ]
    return "\n".join(lines)


def render_sweep(cluster: DictConfig, experiment: str, sweep: str, workers: int, overrides: list[str],
                 blocks: list[str], directory: Path, python: str) -> str:
    """A job array of ``workers`` sweep workers sharing one Optuna study; each runs trials one after another."""
    gpus = min(int(cluster.gpus_per_node), 1)
    if gpus and not any(b.startswith("trainer/") for b in blocks):
        blocks = ["trainer/gpu", *blocks]
    args = [experiment, sweep, *(f"--use={b}" for b in blocks), *overrides,
            *([] if gpus else ["trainer.accelerator=cpu"])]
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
    lines += _site_and_preamble(cluster, gpus, "lightning_app.submit --sweep: every array task is one worker on the "
                                                "same study.")
    lines += [
        'echo "sweep worker $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname) at $(date)"',
        f"exec {shlex.quote(python)} -m lightning_app.sweep {' '.join(shlex.quote(a) for a in args)}",
        "",
    ]
    return "\n".join(lines)


def submit_sweep(experiment: str, sweep: str, workers: int, overrides: list[str] = (), blocks: list[str] = (),
                 cluster_overrides: list[str] = (), dry_run: bool = False,
                 python: str = sys.executable) -> tuple[Path, str]:
    from lightning_app.sweep import load_sweep, split_overrides

    cluster = _cluster(cluster_overrides)
    sweep_fields, run_overrides = split_overrides(overrides)
    load_sweep(sweep, sweep_fields)  # a bad sweep fails here, not in the queue
    cfg = C.compose(experiment, run_overrides, blocks=list(blocks))
    directory = (Path(cfg.run.root) / "sweeps" / f"{experiment}-{sweep}").resolve()
    script = render_sweep(cluster, experiment, sweep, workers, list(overrides), list(blocks), directory, python)
    if dry_run:
        return directory / "submit-sweep.sbatch", script
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "submit-sweep.sbatch"
    path.write_text(script)
    return path, _sbatch(path)


def _cluster(cluster_overrides) -> DictConfig:
    cluster = OmegaConf.load(CLUSTER)
    unknown = sorted({o.split("=", 1)[0] for o in cluster_overrides} - set(cluster))
    if unknown:
        raise C.ConfigError(f"unknown cluster setting(s) {unknown}; known: {sorted(cluster)}")
    cluster.merge_with(OmegaConf.from_dotlist(list(cluster_overrides)))
    return cluster


def _sbatch(path: Path) -> str:
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sbatch failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def submit(experiment: str, overrides: list[str] = (), blocks: list[str] = (), cluster_overrides: list[str] = (),
           dry_run: bool = False, python: str = sys.executable) -> tuple[Path, str]:
    """Render the script into a new run directory and submit it; returns (script, sbatch's answer)."""
    cluster = _cluster(cluster_overrides)
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
    return path, _sbatch(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lightning_app.submit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*", help="training overrides, key=value")
    p.add_argument("--use", action="append", default=[], metavar="GROUP/NAME")
    for name in ("nodes", "gpus-per-node", "tasks-per-node", "cpus-per-task", "partition", "account", "time"):
        p.add_argument(f"--{name}", default=None)
    p.add_argument("--sweep", default=None, help="submit N workers of this sweep (configs/sweep/) as a job array")
    p.add_argument("--workers", type=int, default=4, help="with --sweep: array size (default 4)")
    p.add_argument("--dry-run", action="store_true", help="print the script; create and submit nothing")
    args = p.parse_intermixed_args(argv)
    cluster = [f"{k.replace('-', '_')}={v}" for k, v in vars(args).items()
               if k in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "partition", "account", "time")
               and v not in (None, "")]
    try:
        if args.sweep:
            path, answer = submit_sweep(args.experiment, args.sweep, args.workers, args.overrides, args.use, cluster,
                                        args.dry_run)
        else:
            path, answer = submit(args.experiment, args.overrides, args.use, cluster, args.dry_run)
    except (C.ConfigError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(answer)
    else:
        print(f"submitted job {answer}: {path} (logs in {path.parent})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
