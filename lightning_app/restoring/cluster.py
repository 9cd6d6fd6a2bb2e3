"""Restoring on a cluster: a Slurm job array of restore tasks and the job that merges their summaries.

The files are fixed at submission in OUT/.c2c-jobs/STAMP/files.tsv, each with its task (balanced by
duration); array task I runs ``lightning_app.denoise --file-list ... --task I --skip-complete --summary
task-I.csv``, and a job that starts after the whole array (``--dependency=afterany``) merges the task
summaries into OUT/restore-summary-STAMP.csv. Submitting again skips complete outputs and retries the rest.
"""

from __future__ import annotations

import csv
import heapq
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from lightning_app.data import audio_io
from lightning_app.restoring.files import check_plan, plan_outputs
from lightning_app.restoring.networks import bundled_model, check_model
from lightning_app.training.slurm import cluster_config, sbatch, site_and_preamble

# ----------------------------------------------------------------------------- batches split over tasks
# A cluster restore (``lightning_app.submit --denoise``) fixes its files at submission in a file list,
# a TSV of (task, input, output relative to the output folder); every array task restores its rows and
# appends one summary row per file; a final step merges the task summaries into one.
FILE_LIST_FIELDS = ("task", "input", "output")

SUMMARY_FIELDS = (
    "file",
    "output",
    "status",
    "reason",
    "audio_seconds",
    "compute_seconds",
    "real_time_factor",
    "task",
)

#: a file's status across a task's rows (a requeued task writes a file's row again): the best one counts
STATUS_RANK = {"restored": 0, "skipped-complete": 1, "failed": 2}


def restore_cost(path: Path) -> float:
    """What restoring a file costs, in channel-seconds of audio plus one for the per-file overhead
    (so unreadable files, which cost next to nothing, still spread over the tasks)."""
    try:
        info = audio_io.probe(path)
    except audio_io.AudioFileError:
        return 1.0
    return info.seconds * info.channels + 1.0


def balance_shares(costs: list[float], tasks: int) -> list[int]:
    """The task of each file: the costliest first, each onto the least-loaded task (ties: the lower
    index). A pure function, so the shares are fixed by the list; tasks finish close together even
    when one transfer is hours long and the rest are minutes (every N-th file would not)."""
    loads = [(0.0, t) for t in range(tasks)]
    shares = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, task = heapq.heappop(loads)
        shares[i] = task
        heapq.heappush(loads, (load + costs[i], task))
    return shares


def write_file_list(path: Path, pairs: list[tuple[Path, Path]], shares: list[int], output_dir: Path) -> None:
    """The submission's file list: one row per (input, output) with its task; inputs absolute."""
    with open(path, "w", newline="") as f:
        rows = csv.writer(f, delimiter="\t")
        rows.writerow(FILE_LIST_FIELDS)
        for (src, dst), task in zip(pairs, shares, strict=True):
            rows.writerow([task, src.absolute(), dst.relative_to(output_dir)])


def read_file_list(path: Path, output_dir: Path, task: int | None = None) -> list[tuple[Path, Path]]:
    """(input, output) pairs of a file list: all rows, or those of ``task``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if rows and set(FILE_LIST_FIELDS) - set(rows[0]):
        raise ValueError(f"{path}: not a file list (its columns must be {', '.join(FILE_LIST_FIELDS)})")
    return [
        (Path(r["input"]), output_dir / r["output"]) for r in rows if task is None or int(r["task"]) == task
    ]


def summary_row(
    src: Path,
    dst: Path,
    status: str,
    reason: str = "",
    audio_seconds: float = 0.0,
    compute_seconds: float = 0.0,
    task: int | None = None,
) -> dict:
    rtf = f"{compute_seconds / audio_seconds:.4f}" if status == "restored" and audio_seconds else ""
    return {
        "file": str(src),
        "output": str(dst),
        "status": status,
        "reason": reason,
        "audio_seconds": f"{audio_seconds:.3f}",
        "compute_seconds": f"{compute_seconds:.3f}",
        "real_time_factor": rtf,
        "task": "" if task is None else task,
    }


def append_summary_row(path: Path, row: dict) -> None:
    """One row, appended and closed at once: a task killed later keeps the rows of the files it did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        rows = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        if new:
            rows.writeheader()
        rows.writerow(row)


def merge_summaries(file_list: Path, summaries: list[Path]) -> list[dict]:
    """One row per listed file, in list order: its best row in the task summaries, or ``not-run`` when
    no task reported it (the task was stopped before it: time limit, preemption, cancel, no model)."""
    best: dict[str, dict] = {}
    for path in summaries:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                held = best.get(row["file"])
                if held is None or STATUS_RANK[row["status"]] <= STATUS_RANK[held["status"]]:
                    best[row["file"]] = row
    with open(file_list, newline="") as f:
        listed = list(csv.DictReader(f, delimiter="\t"))
    return [
        best.get(r["input"])
        or summary_row(
            Path(r["input"]),
            Path(r["output"]),
            "not-run",
            "no task reported it (stopped before it? see the task logs)",
            task=int(r["task"]),
        )
        for r in listed
    ]


def summary_totals(rows: list[dict]) -> dict:
    """Files per status, and seconds of audio and compute of the restored ones."""
    done = [r for r in rows if r["status"] == "restored"]
    audio = sum(float(r["audio_seconds"]) for r in done)
    compute = sum(float(r["compute_seconds"]) for r in done)
    counts = {s: sum(r["status"] == s for r in rows) for s in (*STATUS_RANK, "not-run")}
    return {
        "files": len(rows),
        **counts,
        "audio_seconds": audio,
        "compute_seconds": compute,
        "real_time_factor": compute / audio if audio else math.nan,
    }


def write_summary(path: Path, rows: list[dict], totals: dict) -> None:
    """The merged summary: the rows, then a TOTAL row (counts per status in its reason column)."""
    counts = ", ".join(f"{totals[s]} {s}" for s in (*STATUS_RANK, "not-run"))
    total = {
        "file": "TOTAL",
        "output": "",
        "status": f"{totals['files']} files",
        "reason": counts,
        "audio_seconds": f"{totals['audio_seconds']:.3f}",
        "compute_seconds": f"{totals['compute_seconds']:.3f}",
        "real_time_factor": ""
        if math.isnan(totals["real_time_factor"])
        else f"{totals['real_time_factor']:.4f}",
        "task": "",
    }
    with audio_io.atomic_text(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows([*rows, total])


# ----------------------------------------------------------------------------- cluster restores
JOBS = ".c2c-jobs"  # OUT/.c2c-jobs/STAMP/: the file list, the scripts, the task logs and summaries


def render_denoise(
    cluster: DictConfig, job_dir: Path, output_dir: Path, tasks: int, denoise_args: list[str], python: str
) -> tuple[str, str]:
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
    array += site_and_preamble(
        cluster,
        gpus,
        "lightning_app.submit --denoise: array task I restores the rows of files.tsv for task I.",
    )
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
    merge += site_and_preamble(
        cluster,
        0,
        "lightning_app.submit --denoise: submitted with --dependency=afterany:<the array's job id>.",
    )
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
                raise RuntimeError(
                    f"restore job {job} into {output_dir} is still queued or running "
                    f"({jobs.parent}); wait for it or scancel it"
                )


def submit_denoise(
    inputs: list[str],
    output_dir: str | Path,
    workers: int,
    checkpoint: str | None = None,
    denoise_args: list[str] = (),
    cluster_overrides: list[str] = (),
    dry_run: bool = False,
    python: str = sys.executable,
) -> tuple[Path, list[str]]:
    """Fix the file list, render the array and merge jobs, and submit them (the merge after the array).

    Returns (the array's script, [array job id, merge job id]); a dry run creates nothing and returns
    the two scripts instead of the ids.
    """
    cluster = cluster_config(cluster_overrides)
    output_dir = Path(output_dir).absolute()
    checkpoint = Path(checkpoint).absolute() if checkpoint else bundled_model()
    check_model(checkpoint)  # a missing or broken model fails here, not in every task
    pairs = plan_outputs(list(inputs), output_dir)
    if not pairs:
        raise ValueError(f"no audio files found in {' '.join(inputs)}")
    if clashes := check_plan(pairs, overwrite=True):  # tasks run apart: a shared output must not reach them
        shown = "; ".join(f"{src}: {reason}" for src, reason in list(clashes.items())[:3])
        raise ValueError(f"{len(clashes)} input(s) cannot be restored as listed: {shown}")
    tasks = min(workers, len(pairs))  # never an empty task
    job_dir = _new_job_dir(output_dir)
    args = ["--checkpoint", str(checkpoint), *denoise_args]
    scripts = render_denoise(cluster, job_dir, output_dir, tasks, args, python)
    if dry_run:
        return job_dir / "restore.sbatch", list(scripts)
    _refuse_while_running(output_dir)
    job_dir.mkdir(parents=True)
    write_file_list(
        job_dir / "files.tsv",
        pairs,
        balance_shares([restore_cost(src) for src, _ in pairs], tasks),
        output_dir,
    )
    for name, script in zip(("restore.sbatch", "merge.sbatch"), scripts, strict=True):
        (job_dir / name).write_text(script)
    array = sbatch(job_dir / "restore.sbatch")
    (job_dir / "jobs.txt").write_text(f"{array}\n")
    merge = sbatch(job_dir / "merge.sbatch", f"--dependency=afterany:{array}")
    (job_dir / "jobs.txt").write_text(f"{array}\n{merge}\n")
    return job_dir / "restore.sbatch", [array, merge]
