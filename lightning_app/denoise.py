"""Restore real recordings with a trained checkpoint.

    python -m lightning_app.denoise INPUTS... -o DIR [--checkpoint CKPT] [--mix M]
    python -m lightning_app.denoise --file-list FILES.tsv --task I -o DIR --skip-complete --summary TASK.csv

Without --checkpoint the bundled archive model (models/archive_fullband.ckpt, 44.1 kHz music
and speech; its card is models/README.md) restores the files.

INPUTS are wav/flac/ogg files or folders of them (searched recursively; the folder's
layout is kept under DIR). Every output has its input's file name, sample rate, channel
count and sample format. Inputs are never overwritten, nor existing outputs unless
--overwrite; each output is written under a temporary name and renamed when complete.
A bad file is reported with its name and the reason, the others are still done, and the
exit status is 1 if anything failed. SIGTERM (kill, timeout, a scheduler) stops like Ctrl-C:
the file being written is removed, one line says how many were restored, and the exit status
is 128 + the signal (143, or 130 for Ctrl-C); temporary files a killed run (SIGKILL) left in
the output folder are removed by the next run there. An integer sample format cannot hold
samples over full scale: they are clipped, and each file that clipped says how many.

--mix blends denoised and original: 1.0 is fully denoised; the research's remedy for an
over-suppressing model was --mix 0.3 (0.3 denoised + 0.7 original). --residual also writes
what was removed. Files of any length are read, denoised and written block by block, so
memory does not grow with the file; the result equals a single pass over the whole file.
Above the model's Nyquist frequency (a 48 kHz transfer and a 16 kHz model) the input is
passed through untouched unless --high-band drop; the log line of each file says which.

Cluster restores (`make submit-denoise`, lightning_app.submit --denoise) run the second form in
every Slurm array task: the rows of the submission's file list that belong to task I; outputs that
exist are complete (they get their final name only when complete), so --skip-complete skips them
and a re-run redoes only what failed; --summary appends one CSV row per file (file, output, status
restored|skipped-complete|failed, reason, seconds of audio, compute seconds, real-time factor, task).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from lightning_app.checkpoints import CheckpointError, bundled_model, load_model
from lightning_app.data import audio_io
from lightning_app.restore import (
    HIGH_BAND,
    Restorer,
    append_summary_row,
    check_output_dir,
    check_plan,
    check_subtype,
    plan_outputs,
    read_file_list,
    residual_path,
    resolve_device,
    restore_file,
    summary_row,
)

log = logging.getLogger("lightning_app.denoise")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lightning_app.denoise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="audio files or folders of them (or give --file-list)")
    p.add_argument("--checkpoint", default=None,
                   help="a .ckpt from runs/<experiment>/<version>/checkpoints/ (default: the bundled archive model, "
                        "models/archive_fullband.ckpt; see models/README.md)")
    p.add_argument("-o", "--output-dir", required=True, help="where the restored files go (created if needed)")
    p.add_argument("--mix", type=float, default=1.0, help="share of the denoised signal, 0..1 (default 1.0)")
    p.add_argument("--residual", action="store_true",
                   help="also write what was removed (input - output) as NAME.residual.EXT, for listening checks "
                        "(a name too long for the file system is cut, with a hash that keeps it unique)")
    p.add_argument("--no-guard", action="store_true",
                   help="switch the do-no-harm guard off: the model's output as it is (by default the guard puts back "
                        "what the model removed that does not look like noise: far above the input's noise floor "
                        "and not a click; the log line and the report say how much)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)")
    p.add_argument("--channels", default="independent", choices=["independent", "mid-side"],
                   help="stereo: denoise each channel, or mid and side (default independent)")
    p.add_argument("--high-band", default="pass", choices=HIGH_BAND,
                   help="above the model's Nyquist frequency: pass the input through (default) or drop it")
    p.add_argument("--subtype", default=None, help="output sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chunk-seconds", type=float, default=Restorer.chunk_seconds, help="model input length per chunk")
    p.add_argument("--block-seconds", type=float, default=Restorer.block_seconds,
                   help="audio read, denoised and written per step (memory grows with it)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="chunks per forward pass (default: 2 on the CPU, where bigger batches only cost memory; 16 on a GPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true",
                   help="write DIR/report.html: loudest and quietest excerpts before/after/removed with spectrograms, "
                        "and reference-free figures (noise floor, clicks, energy removed per band, DNSMOS for speech)")
    p.add_argument("--content", default=None, choices=["speech", "music"],
                   help="what the files hold, for the report: DNSMOS is a speech measure and is left out for music "
                        "(default: unknown, shown with that caveat)")
    batch = p.add_argument_group("batches split over tasks (what each task of `make submit-denoise` runs)")
    batch.add_argument("--file-list", default=None, metavar="TSV",
                       help="restore the rows of this list (columns task, input, output relative to --output-dir; "
                            "written by lightning_app.submit --denoise) instead of INPUTS")
    batch.add_argument("--task", type=int, default=None, metavar="I", help="with --file-list: only the rows of task I")
    batch.add_argument("--skip-complete", action="store_true",
                       help="skip files whose output exists (it is complete: outputs get their name only when "
                            "complete) instead of refusing them")
    batch.add_argument("--summary", default=None, metavar="CSV",
                       help="append one row per file: file, output, status (restored|skipped-complete|failed), "
                            "reason, seconds of audio, compute seconds, real-time factor, task")
    args = p.parse_args(argv)
    if bool(args.inputs) == bool(args.file_list):
        p.error("give INPUTS or --file-list, not both" if args.inputs else "give INPUTS or --file-list")
    if args.task is not None and not args.file_list:
        p.error("--task picks rows of a --file-list")
    if args.skip_complete and args.overwrite:
        p.error("--skip-complete keeps existing outputs, --overwrite replaces them: give one")
    return args


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    tally = {"restored": 0, "files": 0}
    try:
        with stop_on_signals():
            return run(args, tally)
    except Interrupted as stop:  # one line and the shell's 128 + signal, not a traceback
        print(f"interrupted ({stop}): {tally['restored']} of {tally['files']} file(s) restored; "
              "nothing half-written left", file=sys.stderr)
        return 128 + stop.signum


def run(args: argparse.Namespace, tally: dict[str, int]) -> int:
    """The command's work; ``tally`` counts files planned and restored, for the interruption message."""
    output_dir = Path(args.output_dir)
    record = summary_recorder(args.summary, args.task)
    try:
        if args.file_list:
            pairs = read_file_list(Path(args.file_list), output_dir, args.task)
            if not pairs:
                raise ValueError(f"{args.file_list}: no rows{'' if args.task is None else f' for task {args.task}'}")
        else:
            pairs = plan_outputs(args.inputs, output_dir)
            if not pairs:
                raise ValueError("no audio files found in the given inputs")
        tally["files"] = len(pairs)
        check_output_dir(output_dir)  # before any work: nothing loaded, nothing written
        check_subtype(args.subtype, pairs)
        complete = {dst for _, dst in pairs if args.skip_complete and is_complete(dst, args.residual)}
        todo = [(src, dst) for src, dst in pairs if dst not in complete]
        device = resolve_device(args.device)
        restorer = build_restorer(args, device) if todo else None  # all complete: no model to load
    except (FileNotFoundError, ValueError, CheckpointError, audio_io.AudioFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for src, dst in pairs:
        if dst in complete:
            log.info("%s: skipped, its output %s is complete", src, dst)
            record(src, dst, "skipped-complete", "its output exists")
    refused = check_plan(todo + [(src, residual_path(dst)) for src, dst in todo] if args.residual else todo,
                         args.overwrite)
    for folder in sorted({dst.parent for _, dst in todo if dst.parent.is_dir()}):
        if removed := audio_io.remove_stale_partials(folder):
            log.info("%s: removed %d temporary file(s) left by a killed run", folder, removed)
    failures = dict(refused)
    audio_seconds = compute_seconds = 0.0
    guard_shares: dict[Path, float | None] = {}
    for src, dst in todo:
        if src in refused:
            record(src, dst, "failed", refused[src])
            continue
        start = time.perf_counter()
        try:
            seconds, clipped = restore_file(restorer, src, dst, residual_path(dst) if args.residual else None,
                                            subtype=args.subtype, progress=not args.no_progress)
        except audio_io.AudioFileError as exc:  # about the input, or about an output it could not write
            failures[src] = exc.reason if exc.path == str(src) else str(exc)
        except Exception as exc:  # keep going: one bad file must not cost the rest of the batch
            failures[src] = f"{type(exc).__name__}: {exc}"
        took = time.perf_counter() - start
        if src in failures:
            record(src, dst, "failed", failures[src], compute_seconds=took)
            continue
        audio_seconds += seconds
        compute_seconds += took
        guard_shares[src] = restorer.guard_share()
        tally["restored"] += 1
        record(src, dst, "restored", f"{clipped} samples clipped" if clipped else "", seconds, took)
        log.info("restored %s -> %s (%.1f s of audio in %.1f s, real-time factor %.3f; %s%s)", src, dst, seconds,
                 took, took / max(seconds, 1e-9), restorer.describe(audio_io.probe(src).sample_rate),
                 f"; {clipped} samples clipped" if clipped else "")
    for src, reason in failures.items():
        print(f"FAILED {src}: {reason}", file=sys.stderr)
    if args.report:
        # imported here: the report's scipy costs every start 0.9 s and 70 MB, and most restores write none
        from lightning_app.listening_report import ReportEntry, write_listening_report

        entries = [ReportEntry(src, dst, residual_path(dst) if args.residual else None, content=args.content,
                               guard_share=guard_shares.get(src)) for src, dst in pairs]
        write_listening_report(entries, output_dir)  # logs where the page is
    done = len(todo) - len(failures)
    skipped = f", {len(pairs) - len(todo)} skipped (output complete)" if len(todo) < len(pairs) else ""
    speed = (f"; real-time factor {compute_seconds / audio_seconds:.3f} (seconds of compute per second of audio, "
             f"on {device})") if audio_seconds else ""
    print(f"{done} of {len(pairs)} file(s) restored into {output_dir}{skipped}{speed}")
    return 1 if failures else 0


def build_restorer(args: argparse.Namespace, device) -> Restorer:
    checkpoint = args.checkpoint or bundled_model()
    model = load_model(checkpoint, device)
    log.info("model: %s%s", checkpoint, "" if args.checkpoint else " (the bundled archive model; --checkpoint picks another)")
    batch_size = args.batch_size or (16 if device.type == "cuda" else 2)
    return Restorer(model, mix=args.mix, chunk_seconds=args.chunk_seconds, batch_size=batch_size,
                    channel_mode=args.channels.replace("-", "_"), high_band=args.high_band,
                    block_seconds=args.block_seconds, guard=not args.no_guard)


def is_complete(dst: Path, residual: bool) -> bool:
    """Outputs get their final name only when complete (atomic_writer), so existing means complete."""
    return dst.is_file() and (not residual or residual_path(dst).is_file())


def summary_recorder(path: str | None, task: int | None):
    """record(src, dst, status, reason, audio seconds, compute seconds): one --summary row (none without it)."""
    def record(src, dst, status, reason="", audio_seconds=0.0, compute_seconds=0.0):
        if path:
            append_summary_row(Path(path), summary_row(src, dst, status, reason, audio_seconds, compute_seconds, task))
    return record


if __name__ == "__main__":
    sys.exit(main())
