"""Submit a training run to Slurm: render an sbatch script into a fresh run directory, then sbatch it.

    python -m lightning_app.submit EXP [key=value ...] [--nodes N] [--gpus-per-node G] [--partition P]
                                   [--account A] [--time HH:MM:SS] [--use GROUP/NAME] [--dry-run]
    python -m lightning_app.submit EXP --sweep SWEEP --workers N [...]   (a job array of sweep workers)
    python -m lightning_app.submit --denoise INPUTS... -o OUT --workers N [--checkpoint CKPT] [...]
                                   [-- DENOISE OPTIONS, e.g. --mix 0.3]    (a job array of restore tasks)
    python -m lightning_app.submit --merge OUT/.c2c-jobs/STAMP            (what the array's last job runs)

The job runs one task per GPU under ``srun`` (Lightning reads the ranks from Slurm) on
``--nodes`` nodes with DDP. Each submission gets its own run directory, runs/<EXP>/version_N,
which holds the script, the Slurm log and everything the run writes. Preemption and time
limits: Slurm sends the batch shell USR1 ``signal_seconds`` before the limit, the shell
requeues the job (``--requeue``), and the requeued job starts with ``--resume-if-exists``:
it resumes from that directory's last.ckpt (same version, same TensorBoard run; the steps
since the last checkpoint are redone, never counted twice).

Cluster restores (--denoise): the files are fixed at submission in OUT/.c2c-jobs/STAMP/files.tsv,
each with its task (balanced by duration); array task I runs ``lightning_app.denoise --file-list
... --task I --skip-complete --summary task-I.csv``, and a job that starts after the whole array
(``--dependency=afterany``) merges the task summaries into OUT/restore-summary-STAMP.csv. Running
the same command again skips the complete outputs and retries the rest.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lightning_app import config as C
from lightning_app import denoise
from lightning_app.checkpoints import bundled_model, read_checkpoint
from lightning_app.restore import (
    balance_shares,
    check_plan,
    merge_summaries,
    plan_outputs,
    restore_cost,
    summary_totals,
    write_file_list,
    write_summary,
)
from lightning_app.train import experiment_dir, next_version

CLUSTER = C.CONFIG_DIR / "cluster" / "slurm.yaml"
log = logging.getLogger("lightning_app.submit")


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
    from lightning_app import study_storage  # Optuna and SQLAlchemy: only sweeps need them
    from lightning_app.sweep import load_sweep, split_overrides

    cluster = _cluster(cluster_overrides)
    sweep_fields, run_overrides = split_overrides(overrides)
    sweep_cfg = load_sweep(sweep, sweep_fields)  # a bad sweep fails here, not in the queue
    cfg = C.compose(experiment, run_overrides, blocks=list(blocks))
    directory = (Path(cfg.run.root) / "sweeps" / f"{experiment}-{sweep}").resolve()
    storage = study_storage.parse(sweep_cfg.storage, directory)
    script = render_sweep(cluster, experiment, sweep, workers, list(overrides), list(blocks), directory, python)
    if dry_run:
        return directory / "submit-sweep.sbatch", script
    study_storage.check(storage)  # an unreachable database fails here, not in every array task
    if any(o.startswith("storage=") and study_storage.masked(o) != o for o in sweep_fields):
        log.warning("warning: the storage URL's password is written into %s and shows in the process list; "
                    "keep it in ~/.pgpass or PGPASSWORD instead (README, Sweeps)", directory / "submit-sweep.sbatch")
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


def _sbatch(path: Path, *options: str) -> str:
    done = subprocess.run(["sbatch", "--parsable", *options, str(path)], capture_output=True, text=True)
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


# ----------------------------------------------------------------------------- cluster restores
JOBS = ".c2c-jobs"  # OUT/.c2c-jobs/STAMP/: the file list, the scripts, the task logs and summaries


def render_denoise(cluster: DictConfig, job_dir: Path, output_dir: Path, tasks: int, denoise_args: list[str],
                   python: str) -> tuple[str, str]:
    """The job array (task I restores its rows of files.tsv) and the merge job that runs after it."""
    gpus = min(int(cluster.gpus_per_node), 1)
    q = shlex.quote
    array = [
        "#!/bin/bash",
        "#SBATCH --job-name=c2c-denoise",
        f"#SBATCH --array=0-{tasks - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={cluster.cpus_per_task}",
        f"#SBATCH --time={cluster.time}",
        f"#SBATCH --output={job_dir}/task-%A_%a.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",  # a preempted task comes back and skips the files it finished
    ]
    array += _site_and_preamble(cluster, gpus, "lightning_app.submit --denoise: array task I restores the rows of "
                                                "files.tsv for task I.")
    array += [
        'echo "restore task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname) at $(date)"',
        # SIGTERM (time limit, scancel) stops denoise cleanly: no half-written output, its rows kept.
        f"exec {q(python)} -m lightning_app.denoise --file-list {q(str(job_dir / 'files.tsv'))} "
        f'--task "$SLURM_ARRAY_TASK_ID" --output-dir {q(str(output_dir))} --skip-complete '
        f'--summary {q(str(job_dir))}/task-"$SLURM_ARRAY_TASK_ID".csv --no-progress '
        f"{' '.join(q(a) for a in denoise_args)}".rstrip(),
        "",
    ]
    merge = [
        "#!/bin/bash",
        "#SBATCH --job-name=c2c-denoise-merge",
        "#SBATCH --ntasks=1",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --time=00:15:00",
        f"#SBATCH --output={job_dir}/merge-%j.out",
    ]
    merge += _site_and_preamble(cluster, 0, "lightning_app.submit --denoise: submitted with "
                                            "--dependency=afterany:<the array's job id>.")
    merge += [f"exec {q(python)} -m lightning_app.submit --merge {q(str(job_dir))}", ""]
    return "\n".join(array), "\n".join(merge)


def merged_summary_path(job_dir: Path) -> Path:
    return job_dir.parent.parent / f"restore-summary-{job_dir.name}.csv"


def _new_job_dir(output_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    job_dir, n = output_dir / JOBS / stamp, 1
    while job_dir.exists():  # two submissions within a second
        n += 1
        job_dir = output_dir / JOBS / f"{stamp}-{n}"
    return job_dir


def _refuse_while_running(output_dir: Path) -> None:
    """A second job into the same folder while one runs could restore a file twice: refuse it."""
    for jobs in sorted((output_dir / JOBS).glob("*/jobs.txt")):
        if merged_summary_path(jobs.parent).exists():
            continue  # its merge ran, so the array had ended
        for job in jobs.read_text().split():
            if subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
                raise RuntimeError(f"restore job {job} into {output_dir} is still queued or running "
                                   f"({jobs.parent}); wait for it or scancel it")


def submit_denoise(inputs: list[str], output_dir: str | Path, workers: int, checkpoint: str | None = None,
                   denoise_args: list[str] = (), cluster_overrides: list[str] = (), dry_run: bool = False,
                   python: str = sys.executable) -> tuple[Path, list[str]]:
    """Fix the file list, render the array and merge jobs, and submit them (the merge after the array).

    Returns (the array's script, [array job id, merge job id]); a dry run creates nothing and returns
    the two scripts instead of the ids.
    """
    cluster = _cluster(cluster_overrides)
    output_dir = Path(output_dir).absolute()
    checkpoint = Path(checkpoint).absolute() if checkpoint else bundled_model()
    read_checkpoint(checkpoint)  # a missing or broken model fails here, not in every task
    pairs = plan_outputs(list(inputs), output_dir)
    if not pairs:
        raise ValueError(f"no audio files found in {' '.join(inputs)}")
    if clashes := check_plan(pairs, overwrite=True):  # tasks run apart: a shared output must not reach them
        shown = "; ".join(f"{src}: {reason}" for src, reason in list(clashes.items())[:3])
        raise ValueError(f"{len(clashes)} input(s) cannot be restored as listed: {shown}")
    tasks = min(workers, len(pairs))  # never an empty task
    job_dir = _new_job_dir(output_dir)
    args = ["--checkpoint", str(checkpoint), *denoise_args]
    denoise.parse_args(["--file-list", "-", "--task", "0", "-o", str(output_dir), "--skip-complete", *args])
    scripts = render_denoise(cluster, job_dir, output_dir, tasks, args, python)
    if dry_run:
        return job_dir / "restore.sbatch", list(scripts)
    _refuse_while_running(output_dir)
    job_dir.mkdir(parents=True)
    write_file_list(job_dir / "files.tsv", pairs, balance_shares([restore_cost(src) for src, _ in pairs], tasks),
                    output_dir)
    for name, script in zip(("restore.sbatch", "merge.sbatch"), scripts, strict=True):
        (job_dir / name).write_text(script)
    array = _sbatch(job_dir / "restore.sbatch")
    (job_dir / "jobs.txt").write_text(f"{array}\n")
    merge = _sbatch(job_dir / "merge.sbatch", f"--dependency=afterany:{array}")
    (job_dir / "jobs.txt").write_text(f"{array}\n{merge}\n")
    return job_dir / "restore.sbatch", [array, merge]


def merge_denoise(job_dir: str | Path) -> int:
    """Merge the task summaries of a cluster restore into OUT/restore-summary-STAMP.csv and print the totals;
    exit status 1 if a file failed or was not run."""
    job_dir = Path(job_dir)
    rows = merge_summaries(job_dir / "files.tsv", sorted(job_dir.glob("task-*.csv")))
    totals = summary_totals(rows)
    path = merged_summary_path(job_dir)
    write_summary(path, rows, totals)
    rtf = "" if math.isnan(totals["real_time_factor"]) else f", real-time factor {totals['real_time_factor']:.3f}"
    print(f"{job_dir.name}: {totals['files']} files: {totals['restored']} restored, {totals['skipped-complete']} "
          f"skipped (complete), {totals['failed']} failed, {totals['not-run']} not run; "
          f"{totals['audio_seconds']:.1f} s of audio in {totals['compute_seconds']:.1f} s of compute{rtf}")
    for row in rows:
        if row["status"] in ("failed", "not-run"):
            print(f"  {row['status'].upper()} {row['file']}: {row['reason']}")
    print(f"summary: {path}")
    return 1 if totals["failed"] or totals["not-run"] else 0


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def denoise_main(argv: list[str]) -> int:
    """``--denoise``: the submission's own options, then ``--`` and options passed on to denoise."""
    own, forwarded = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m lightning_app.submit --denoise",
                                description="Restore files as a Slurm job array (see lightning_app.submit).")
    p.add_argument("--denoise", action="store_true", required=True)
    p.add_argument("inputs", nargs="+", help="audio files, folders of them, or .txt lists of them")
    p.add_argument("-o", "--output-dir", required=True)
    p.add_argument("--workers", type=int, default=4, help="array tasks (default 4; at most one per file)")
    p.add_argument("--checkpoint", default=None, help="default: the bundled model, models/archive_fullband.ckpt")
    for name in ("gpus-per-node", "cpus-per-task", "partition", "account", "time"):
        p.add_argument(f"--{name}", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the two scripts; create and submit nothing")
    args = p.parse_args(own)
    cluster = [f"{k}={v}" for k, v in vars(args).items()
               if k in ("gpus_per_node", "cpus_per_task", "partition", "account", "time") and v not in (None, "")]
    try:
        path, answer = submit_denoise(args.inputs, args.output_dir, args.workers, args.checkpoint, forwarded,
                                      cluster, args.dry_run)
    except (C.ConfigError, RuntimeError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(answer[0])
        print("# ---- then, submitted with --dependency=afterany:<the array's job id> ----")
        print(answer[1])
    else:
        print(f"submitted job array {answer[0]} and merge job {answer[1]} after it: {path} (logs in {path.parent}); "
              f"summary: {merged_summary_path(path.parent)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--merge" in argv:
        job_dir = argv[argv.index("--merge") + 1:][:1]
        return merge_denoise(job_dir[0]) if job_dir else _usage_error("--merge needs the job folder, OUT/.c2c-jobs/STAMP")
    if "--denoise" in argv:
        return denoise_main(argv)
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
