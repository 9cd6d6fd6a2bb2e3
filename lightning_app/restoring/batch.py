"""Restoring a batch of files: plan (what to restore, what is complete, what is refused) -> execute -> report.

A bad file is reported with its name and the reason and the others are still done. SIGINT and SIGTERM
stop by an exception that unwinds the writers, so the file being written is removed. The command line is
``lightning_app.denoise``; its options are the fields this module reads from ``args``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lightning_app.data import audio_io
from lightning_app.restoring.cluster import append_summary_row, read_file_list, summary_row
from lightning_app.restoring.engine import Restorer
from lightning_app.restoring.files import (
    check_output_dir,
    check_plan,
    check_subtype,
    plan_outputs,
    residual_path,
    restore_file,
)
from lightning_app.restoring.networks import bundled_model, choose_engine, cpu_cores, open_network

log = logging.getLogger(__name__)
#: what a plan cannot go on from: one ``error:`` line and exit status 2, before any output is created (a
#: model or checkpoint that cannot be used is a ValueError)
PLAN_ERRORS = (FileNotFoundError, ValueError, audio_io.AudioFileError)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinding removes the file being written (atomic_writer)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextmanager
def stop_on_signals(signums=(signal.SIGINT, signal.SIGTERM)):
    """SIGTERM (kill, timeout, schedulers) stops like Ctrl-C, by an exception that unwinds the writers:
    SIGTERM's default kills on the spot and leaves the temporary file behind."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def stop(signum, frame):
        for s in previous:  # a second signal must not interrupt the clean-up of the first
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    # A signal ignored when we were started (`cmd &` in a script ignores SIGINT) stays ignored.
    previous = {s: signal.getsignal(s) for s in signums if signal.getsignal(s) is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@dataclass
class BatchPlan:
    """Every (input, output) pair; those whose output is complete (skipped) and those to restore;
    the inputs refused before any work (an output that would overwrite, a clash), with the reason."""

    output_dir: Path
    pairs: list[tuple[Path, Path]]
    complete: set[Path]
    todo: list[tuple[Path, Path]]
    refused: dict[Path, str]


@dataclass
class BatchResult:
    failures: dict[Path, str] = field(default_factory=dict)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    guard_shares: dict[Path, float | None] = field(default_factory=dict)


def plan_batch(args: argparse.Namespace) -> BatchPlan:
    """What the command will do, decided before any model is loaded or anything written."""
    output_dir = Path(args.output_dir)
    if args.file_list:
        pairs = read_file_list(Path(args.file_list), output_dir, args.task)
        if not pairs:
            raise ValueError(
                f"{args.file_list}: no rows{'' if args.task is None else f' for task {args.task}'}"
            )
    else:
        pairs = plan_outputs(args.inputs, output_dir)
        if not pairs:
            raise ValueError("no audio files found in the given inputs")
    check_output_dir(output_dir)
    check_subtype(args.subtype, pairs)
    complete = {dst for _, dst in pairs if args.skip_complete and is_complete(dst, args.residual)}
    todo = [(src, dst) for src, dst in pairs if dst not in complete]
    writes = todo + [(src, residual_path(dst)) for src, dst in todo] if args.residual else todo
    return BatchPlan(output_dir, pairs, complete, todo, check_plan(writes, args.overwrite))


def execute_batch(
    plan: BatchPlan, restorer: Restorer | None, args: argparse.Namespace, record, tally: dict[str, int]
) -> BatchResult:
    """Restore the plan's files one by one; a failure is recorded and the rest still done."""
    for src, dst in plan.pairs:
        if dst in plan.complete:
            log.info("%s: skipped, its output %s is complete", src, dst)
            record(src, dst, "skipped-complete", "its output exists")
    for folder in sorted({dst.parent for _, dst in plan.todo if dst.parent.is_dir()}):
        if removed := audio_io.remove_stale_partials(folder):
            log.info("%s: removed %d temporary file(s) left by a killed run", folder, removed)
    result = BatchResult(failures=dict(plan.refused))
    for src, dst in plan.todo:
        if src in plan.refused:
            record(src, dst, "failed", plan.refused[src])
            continue
        start = time.perf_counter()
        try:
            seconds, clipped = restore_file(
                restorer,
                src,
                dst,
                residual_path(dst) if args.residual else None,
                subtype=args.subtype,
                progress=not args.no_progress,
            )
        except audio_io.AudioFileError as exc:  # about the input, or about an output it could not write
            result.failures[src] = exc.reason if exc.path == str(src) else str(exc)
        except Exception as exc:  # keep going: one bad file must not cost the rest of the batch
            result.failures[src] = f"{type(exc).__name__}: {exc}"
        took = time.perf_counter() - start
        if src in result.failures:
            record(src, dst, "failed", result.failures[src], compute_seconds=took)
            continue
        result.audio_seconds += seconds
        result.compute_seconds += took
        result.guard_shares[src] = restorer.guard_share()
        tally["restored"] += 1
        record(src, dst, "restored", f"{clipped} samples clipped" if clipped else "", seconds, took)
        log.info(
            "restored %s -> %s (%.1f s of audio in %.1f s, real-time factor %.3f; %s%s)",
            src,
            dst,
            seconds,
            took,
            took / max(seconds, 1e-9),
            restorer.describe(audio_io.probe(src).sample_rate),
            f"; {clipped} samples clipped" if clipped else "",
        )
    return result


def report_batch(plan: BatchPlan, result: BatchResult, args: argparse.Namespace, engine: str) -> int:
    """Failures on stderr, the listening report if asked, one summary line; the exit status."""
    for src, reason in result.failures.items():
        print(f"FAILED {src}: {reason}", file=sys.stderr)
    if args.report:
        # imported here: the report's scipy would slow every start, and most restores write none
        from lightning_app.evaluation.listening_report import ReportEntry, write_listening_report

        entries = [
            ReportEntry(
                src,
                dst,
                residual_path(dst) if args.residual else None,
                content=args.content,
                guard_share=result.guard_shares.get(src),
            )
            for src, dst in plan.pairs
        ]
        write_listening_report(entries, plan.output_dir)  # logs where the page is
    done = len(plan.todo) - len(result.failures)
    skipped = (
        f", {len(plan.pairs) - len(plan.todo)} skipped (output complete)"
        if len(plan.todo) < len(plan.pairs)
        else ""
    )
    speed = (
        (
            f"; real-time factor {result.compute_seconds / result.audio_seconds:.3f} (seconds of compute per "
            f"second of audio; {engine})"
        )
        if result.audio_seconds
        else ""
    )
    print(f"{done} of {len(plan.pairs)} file(s) restored into {plan.output_dir}{skipped}{speed}")
    return 1 if result.failures else 0


def run(args: argparse.Namespace, tally: dict[str, int]) -> int:
    """Plan -> execute -> report; ``tally`` counts files planned and restored, for an interruption's
    message."""
    record = summary_recorder(args.summary, args.task)
    try:
        plan = plan_batch(args)
        tally["files"] = len(plan.pairs)
        restorer = build_restorer(args) if plan.todo else None  # all complete: no model to load
    except PLAN_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = describe_engine(restorer) if restorer else "nothing to run"
    return report_batch(plan, execute_batch(plan, restorer, args, record, tally), args, engine)


#: the most network calls run at once by default: each holds its own activations (~110 MB for the bundled
#: model, one 5-s chunk), so a many-core machine gives each call several threads instead of a call per core
DEFAULT_WORKERS_MAX = 8


def default_workers(cores: int) -> int:
    """Calls at once by default: the most, up to ``DEFAULT_WORKERS_MAX``, that share the cores evenly (12
    cores: 6 calls of 2 threads; a prime number of cores over the maximum: one call on all of them)."""
    return max(w for w in range(1, min(cores, DEFAULT_WORKERS_MAX) + 1) if cores % w == 0)


def build_restorer(args: argparse.Namespace) -> Restorer:
    checkpoint = args.checkpoint or bundled_model()
    # ONNX Runtime: one call per core at once, each on one thread (Restorer.workers says why), up to
    # DEFAULT_WORKERS_MAX; torch runs a call on every core itself. Each worker thread runs the network on its
    # own share of the cores.
    onnx = choose_engine(Path(checkpoint), args.engine, args.device) == "onnx"
    workers = args.workers or (default_workers(cpu_cores()) if onnx else 1)
    threads = max(1, cpu_cores() // workers) if workers > 1 else None
    network = open_network(checkpoint, args.engine, args.device, threads)
    # A mono file's chunks run at once in batches of one row per worker.
    batch_size = args.batch_size or (max(network.batch_size, workers) if onnx else network.batch_size)
    restorer = Restorer(
        network,
        mix=args.mix,
        chunk_seconds=args.chunk_seconds,
        batch_size=batch_size,
        channel_mode=args.channels.replace("-", "_"),
        high_band=args.high_band,
        block_seconds=args.block_seconds,
        guard=not args.no_guard,
        workers=workers,
    )
    log.info(
        "model: %s%s; %s",
        getattr(network, "path", checkpoint),
        "" if args.checkpoint else " (the bundled archive model; --checkpoint picks another)",
        describe_engine(restorer),
    )
    return restorer


def describe_engine(restorer: Restorer) -> str:
    """What runs the network and how many calls at once: ``ONNX Runtime on the CPU (1 thread), 2 calls at
    once``."""
    at_once = restorer.calls_at_once
    return restorer.model.engine + (f", {at_once} calls at once" if at_once > 1 else "")


def is_complete(dst: Path, residual: bool) -> bool:
    """Outputs get their final name only when complete (atomic_writer), so existing means complete."""
    return dst.is_file() and (not residual or residual_path(dst).is_file())


def summary_recorder(path: str | None, task: int | None):
    """record(src, dst, status, reason, audio seconds, compute seconds): one --summary row (none without
    it)."""

    def record(src, dst, status, reason="", audio_seconds=0.0, compute_seconds=0.0):
        if path:
            append_summary_row(
                Path(path), summary_row(src, dst, status, reason, audio_seconds, compute_seconds, task)
            )

    return record
