"""Cluster restores: the file list fixed at submission, each task's share, skip-complete re-runs, the merged
summary; on a real single-node Slurm where there is one."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import soundfile as sf

from lightning_app import denoise
from lightning_app import submit as S
from lightning_app.restoring import cluster, networks
from lightning_app.restoring.cluster import balance_shares, read_file_list, restore_cost, write_file_list
from lightning_app.restoring.files import plan_outputs
from tests.helpers import slurm_job_state, wait_until, write_tone_file

CPU_CLUSTER = ["gpus_per_node=0", "cpus_per_task=1", "time=00:10:00"]


def _archive(folder: Path, good: int = 5) -> list[Path]:
    """``good`` short 16-kHz files (a few tenths of a second) and one corrupt FLAC."""
    files = [folder / f"take_{i}.wav" for i in range(good)]
    for i, path in enumerate(files):
        write_tone_file(path, 0.2 + 0.05 * i, 16000, seed=i)
    (folder / "broken.flac").write_bytes(b"fLaC" + bytes(64))
    return files


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _stamps(paths) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each output: a file restored again would get a new inode (atomic rename)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def test_balance_shares_puts_the_costliest_first_on_the_least_loaded_task():
    costs = [50.0, *[5.0] * 10]  # one long transfer and ten short ones
    shares = balance_shares(costs, 2)
    assert shares == balance_shares(costs, 2), "a pure function: every task computes the same shares"
    loads = [sum(c for c, s in zip(costs, shares, strict=True) if s == t) for t in range(2)]
    assert loads == [50.0, 50.0]  # every other file would give 75 and 25
    assert balance_shares([1.0] * 6, 2) == [0, 1, 0, 1, 0, 1], "equal costs: ties go to the lower task"


@pytest.mark.slow
def test_dry_run_prints_the_array_and_its_merge_job_and_creates_nothing(
    tmp_path, trained_run, monkeypatch, capsys
):
    _archive(tmp_path / "in")
    (tmp_path / "in" / "list.txt").write_text(
        "# one per line, relative to this list\ntake_0.wav\ntake_1.wav\n"
    )
    monkeypatch.setattr(networks, "BUNDLED_MODEL", Path(trained_run["best"]))  # no CKPT: the bundled model
    out = tmp_path / "out"
    code = S.main(
        [
            "--denoise",
            str(tmp_path / "in" / "list.txt"),
            "-o",
            str(out),
            "--workers",
            "4",
            "--gpus-per-node",
            "0",
            "--dry-run",
            "--",
            "--mix",
            "0.3",
        ]
    )
    array, merge = capsys.readouterr().out.split("# ---- then, submitted with --dependency=afterany:")
    assert code == 0 and not out.exists(), "a dry run creates nothing"
    job_dir = (
        next(line for line in array.splitlines() if "--output=" in line).split("=", 1)[1].rsplit("/", 1)[0]
    )
    assert Path(job_dir).parent == out / ".c2c-jobs"
    assert "#SBATCH --array=0-1" in array, "two files: two tasks, never an empty one"
    assert "#SBATCH --requeue" in array and "--gpus-per-node" not in array
    command = next(line for line in array.splitlines() if line.startswith("exec "))
    for part in (
        f"-m lightning_app.denoise --file-list {job_dir}/files.tsv",
        '--task "$SLURM_ARRAY_TASK_ID"',
        f"--output-dir {out}",
        "--skip-complete",
        f'--summary {job_dir}/task-"$SLURM_ARRAY_TASK_ID".csv',
        f"--checkpoint {trained_run['best']}",
        "--mix 0.3",
    ):
        assert part in command, part
    assert f"-m lightning_app.submit --merge {job_dir}" in merge and "#SBATCH --array" not in merge

    with pytest.raises(SystemExit):  # a denoise option with a typo fails at submission, not in every task
        S.main(
            [
                "--denoise",
                str(tmp_path / "in"),
                "-o",
                str(out),
                "--workers",
                "2",
                "--checkpoint",
                str(trained_run["best"]),
                "--dry-run",
                "--",
                "--mixx",
                "0.3",
            ]
        )
    (tmp_path / "other").mkdir()
    write_tone_file(tmp_path / "other" / "take_0.wav", 0.2, 16000)
    with pytest.raises(ValueError, match="also the output of"):  # two tasks must never write one output
        cluster.submit_denoise(
            [str(tmp_path / "in" / "take_0.wav"), str(tmp_path / "other" / "take_0.wav")],
            out,
            2,
            trained_run["best"],
            dry_run=True,
        )


@pytest.mark.slow
def test_a_submission_fixes_the_file_list_and_submits_the_merge_after_the_array(
    tmp_path, trained_run, monkeypatch
):
    _archive(tmp_path / "in")
    calls = []
    monkeypatch.setattr(
        cluster, "sbatch", lambda path, *options: calls.append((path.name, options)) or str(100 + len(calls))
    )
    path, jobs = cluster.submit_denoise(
        [str(tmp_path / "in")], tmp_path / "out", 2, trained_run["best"], cluster_overrides=CPU_CLUSTER
    )
    assert jobs == ["101", "102"]
    assert calls == [("restore.sbatch", ()), ("merge.sbatch", ("--dependency=afterany:101",))]
    assert (path.parent / "jobs.txt").read_text().split() == jobs
    listed = read_file_list(path.parent / "files.tsv", tmp_path / "out")
    assert sorted(src.name for src, _ in listed) == ["broken.flac", *(f"take_{i}.wav" for i in range(5))]
    shares = [len(read_file_list(path.parent / "files.tsv", tmp_path / "out", task)) for task in (0, 1)]
    assert shares == [3, 3]


@pytest.mark.slow
def test_tasks_restore_their_share_skip_complete_outputs_and_the_merge_counts_each_file_once(
    tmp_path, trained_run, capsys
):
    good = _archive(tmp_path / "in")
    out, job_dir = tmp_path / "out", tmp_path / "out" / ".c2c-jobs" / "first"
    job_dir.mkdir(parents=True)
    pairs = plan_outputs([str(tmp_path / "in")], out)
    write_file_list(job_dir / "files.tsv", pairs, balance_shares([restore_cost(s) for s, _ in pairs], 2), out)

    def run_task(task: int, summaries: Path) -> int:
        return denoise.main(
            [
                "--file-list",
                str(job_dir / "files.tsv"),
                "--task",
                str(task),
                "-o",
                str(out),
                "--checkpoint",
                trained_run["best"],
                "--skip-complete",
                "--no-progress",
                "--summary",
                str(summaries / f"task-{task}.csv"),
            ]
        )

    assert run_task(0, job_dir) == 0 and S.merge_denoise(job_dir) == 1, (
        "task 1 has not run: its files are not-run"
    )
    assert {r["status"] for r in _rows(out / "restore-summary-first.csv")[:-1]} == {"restored", "not-run"}
    assert run_task(1, job_dir) == 1, "task 1 holds the corrupt file"
    assert S.merge_denoise(job_dir) == 1
    rows = _rows(out / "restore-summary-first.csv")
    files, total = rows[:-1], rows[-1]
    assert [r["file"] for r in files] == [str(src.absolute()) for src, _ in pairs], (
        "list order, each file once"
    )
    assert {Path(r["file"]).name: r["status"] for r in files} == {
        "broken.flac": "failed",
        **{p.name: "restored" for p in good},
    }
    broken = next(r for r in files if r["file"].endswith("broken.flac"))
    assert "not a readable audio file" in broken["reason"]
    assert all(float(r["real_time_factor"]) > 0 for r in files if r["status"] == "restored")
    assert (
        total["file"] == "TOTAL" and total["reason"] == "5 restored, 0 skipped-complete, 1 failed, 0 not-run"
    )
    assert abs(float(total["audio_seconds"]) - sum(sf.info(p).duration for p in good)) < 0.01
    assert "FAILED" in capsys.readouterr().out

    before = _stamps(out / p.name for p in good)
    again = out / ".c2c-jobs" / "second"
    again.mkdir()
    (again / "files.tsv").write_bytes((job_dir / "files.tsv").read_bytes())
    assert [run_task(t, again) for t in (0, 1)] == [0, 1]
    S.merge_denoise(again)
    statuses = {Path(r["file"]).name: r["status"] for r in _rows(out / "restore-summary-second.csv")[:-1]}
    assert statuses == {"broken.flac": "failed", **{p.name: "skipped-complete" for p in good}}
    assert _stamps(out / p.name for p in good) == before, "nothing restored twice"


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_a_slurm_job_array_restores_each_file_once_and_a_resubmission_does_nothing_twice(
    tmp_path, trained_run
):
    good = _archive(tmp_path / "in")
    out = tmp_path / "out"

    def submit_and_wait() -> tuple[Path, float]:
        start = time.monotonic()
        path, jobs = cluster.submit_denoise(
            [str(tmp_path / "in")], out, 2, trained_run["best"], cluster_overrides=CPU_CLUSTER
        )
        with pytest.raises(
            RuntimeError, match="still queued or running"
        ):  # two jobs could restore a file twice
            cluster.submit_denoise(
                [str(tmp_path / "in")], out, 2, trained_run["best"], cluster_overrides=CPU_CLUSTER
            )
        summary = cluster.merged_summary_path(path.parent)
        wait_until(
            lambda: summary.is_file() and not any(slurm_job_state(j) for j in jobs),
            300,
            "the array and its merge",
        )
        return path.parent, time.monotonic() - start

    first, first_seconds = submit_and_wait()
    restored = _stamps(out / p.name for p in good)
    second, second_seconds = submit_and_wait()
    assert second != first

    runs = [
        {Path(r["file"]).name: r for r in _rows(cluster.merged_summary_path(job))[:-1]}
        for job in (first, second)
    ]
    assert {n: r["status"] for n, r in runs[0].items()} == {
        "broken.flac": "failed",
        **{p.name: "restored" for p in good},
    }
    assert {n: r["status"] for n, r in runs[1].items()} == {
        "broken.flac": "failed",
        **{p.name: "skipped-complete" for p in good},
    }
    assert "not a readable audio file" in runs[1]["broken.flac"]["reason"], "the bad file was retried"
    assert _stamps(out / p.name for p in good) == restored, "nothing restored twice"
    task_rows = [r for job in (first, second) for csv_path in job.glob("task-*.csv") for r in _rows(csv_path)]
    assert sorted(r["file"] for r in task_rows if r["status"] == "restored") == sorted(
        str(p.absolute()) for p in good
    ), "every good file restored exactly once over both submissions"
    assert {r["task"] for r in task_rows} == {"0", "1"}, "both array tasks did work"
    assert "5 restored" in (next(first.glob("merge-*.out"))).read_text()
    print(
        f"\nSlurm restore array: 6 files (5 good, 1 corrupt) in 2 tasks; "
        f"first submission {first_seconds:.1f} s "
        f"(5 restored, 1 failed); re-submission {second_seconds:.1f} s (5 skipped-complete, 1 failed again)"
    )
