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
the same command again skips the complete outputs and retries the rest."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from lightning_app import config as C
from lightning_app import denoise
from lightning_app.restoring.cluster import (
    merge_summaries,
    merged_summary_path,
    submit_denoise,
    summary_totals,
    write_summary,
)
from lightning_app.training.slurm import submit, submit_sweep


def merge_denoise(job_dir: str | Path) -> int:
    """Merge the task summaries of a cluster restore into OUT/restore-summary-STAMP.csv and print the totals;
    exit status 1 if a file failed or was not run."""
    job_dir = Path(job_dir)
    rows = merge_summaries(job_dir / "files.tsv", sorted(job_dir.glob("task-*.csv")))
    totals = summary_totals(rows)
    path = merged_summary_path(job_dir)
    write_summary(path, rows, totals)
    rtf = (
        ""
        if math.isnan(totals["real_time_factor"])
        else f", real-time factor {totals['real_time_factor']:.3f}"
    )
    print(
        f"{job_dir.name}: {totals['files']} files: {totals['restored']} restored, "
        f"{totals['skipped-complete']} skipped (complete), {totals['failed']} failed, "
        f"{totals['not-run']} not run; "
        f"{totals['audio_seconds']:.1f} s of audio in {totals['compute_seconds']:.1f} s of compute{rtf}"
    )
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
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.submit --denoise",
        description="Restore files as a Slurm job array (see lightning_app.submit).",
    )
    p.add_argument("--denoise", action="store_true", required=True)
    p.add_argument("inputs", nargs="+", help="audio files, folders of them, or .txt lists of them")
    p.add_argument("-o", "--output-dir", required=True)
    p.add_argument("--workers", type=int, default=4, help="array tasks (default 4; at most one per file)")
    p.add_argument(
        "--checkpoint", default=None, help="default: the bundled model, models/archive_fullband.ckpt"
    )
    for name in ("gpus-per-node", "cpus-per-task", "partition", "account", "time"):
        p.add_argument(f"--{name}", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the two scripts; create and submit nothing")
    args = p.parse_args(own)
    cluster = [
        f"{k}={v}"
        for k, v in vars(args).items()
        if k in ("gpus_per_node", "cpus_per_task", "partition", "account", "time") and v not in (None, "")
    ]
    # the options every task will pass to denoise: a mistake fails here, once, not in every task
    denoise.parse_args(
        ["--file-list", "-", "--task", "0", "-o", args.output_dir, "--skip-complete", *forwarded]
    )
    try:
        path, answer = submit_denoise(
            args.inputs, args.output_dir, args.workers, args.checkpoint, forwarded, cluster, args.dry_run
        )
    except (C.ConfigError, RuntimeError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(answer[0])
        print("# ---- then, submitted with --dependency=afterany:<the array's job id> ----")
        print(answer[1])
    else:
        print(
            f"submitted job array {answer[0]} and merge job {answer[1]} after it: {path} "
            f"(logs in {path.parent}); "
            f"summary: {merged_summary_path(path.parent)}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--merge" in argv:
        job_dir = argv[argv.index("--merge") + 1 :][:1]
        return (
            merge_denoise(job_dir[0])
            if job_dir
            else _usage_error("--merge needs the job folder, OUT/.c2c-jobs/STAMP")
        )
    if "--denoise" in argv:
        return denoise_main(argv)
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*", help="training overrides, key=value")
    p.add_argument("--use", action="append", default=[], metavar="GROUP/NAME")
    for name in ("nodes", "gpus-per-node", "tasks-per-node", "cpus-per-task", "partition", "account", "time"):
        p.add_argument(f"--{name}", default=None)
    p.add_argument(
        "--sweep", default=None, help="submit N workers of this sweep (configs/sweep/) as a job array"
    )
    p.add_argument("--workers", type=int, default=4, help="with --sweep: array size (default 4)")
    p.add_argument("--dry-run", action="store_true", help="print the script; create and submit nothing")
    args = p.parse_intermixed_args(argv)
    cluster = [
        f"{k.replace('-', '_')}={v}"
        for k, v in vars(args).items()
        if k in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "partition", "account", "time")
        and v not in (None, "")
    ]
    try:
        if args.sweep:
            path, answer = submit_sweep(
                args.experiment, args.sweep, args.workers, args.overrides, args.use, cluster, args.dry_run
            )
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
