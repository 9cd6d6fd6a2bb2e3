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
import sys

from lightning_app.restoring.batch import Interrupted, run, stop_on_signals
from lightning_app.restoring.engine import HIGH_BAND, Restorer
from lightning_app.restoring.networks import ENGINES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.denoise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", help="audio files or folders of them (or give --file-list)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a .ckpt from runs/<experiment>/<version>/checkpoints/, or a .onnx from c2c-export (default: "
        "the bundled archive model, models/archive_fullband.ckpt and its export beside it; see "
        "models/README.md)",
    )
    p.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="what runs the network: onnx (ONNX Runtime on the CPU; needs an exported model, given or "
        "beside the checkpoint as NAME.onnx) or torch (a checkpoint, on --device). auto: onnx when an "
        "export is there and no GPU is asked for or found, torch otherwise. The rest of the restore is "
        "the same numpy code",
    )
    p.add_argument(
        "-o", "--output-dir", required=True, help="where the restored files go (created if needed)"
    )
    p.add_argument("--mix", type=float, default=1.0, help="share of the denoised signal, 0..1 (default 1.0)")
    p.add_argument(
        "--residual",
        action="store_true",
        help="also write what was removed (input - output) as NAME.residual.EXT, for listening checks "
        "(a name too long for the file system is cut, with a hash that keeps it unique)",
    )
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="switch the do-no-harm guard off: the model's output as it is (by default the guard puts back "
        "what the model removed that does not look like noise: far above the input's noise floor "
        "and not a click; the log line and the report say how much)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (inputs are never replaced)"
    )
    p.add_argument(
        "--channels",
        default="independent",
        choices=["independent", "mid-side"],
        help="stereo: denoise each channel, or mid and side (default independent)",
    )
    p.add_argument(
        "--high-band",
        default="pass",
        choices=HIGH_BAND,
        help="above the model's Nyquist frequency: pass the input through (default) or drop it",
    )
    p.add_argument(
        "--subtype",
        default=None,
        help="output sample format, e.g. PCM_16, PCM_24, FLOAT (default: the input's)",
    )
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the torch engine runs"
    )
    p.add_argument(
        "--chunk-seconds", type=float, default=Restorer.chunk_seconds, help="model input length per chunk"
    )
    p.add_argument(
        "--block-seconds",
        type=float,
        default=Restorer.block_seconds,
        help="audio read, denoised and written per step (memory grows with it)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="chunks per batch (default: one per worker with ONNX Runtime, which runs each chunk as a call "
        "of its own, and never more than run at once: a thread per channel, its chunks over the workers "
        "left; with torch, chunks per forward pass: 2 on the CPU, where bigger batches only cost memory, 16 "
        "on a GPU)",
    )
    p.add_argument(
        "--workers",
        "--parallel-channels",
        dest="workers",
        type=int,
        default=None,
        help="network calls at once, one thread each: the channels, then with ONNX Runtime the chunks of "
        "a batch (default with ONNX Runtime: one per core, at most 8, the cores shared evenly among them; on "
        "2 cores a third faster than one call on both, for ~110 MB more per call; with torch 1, which runs "
        "each call on every core); the output is the same",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--report",
        action="store_true",
        help="write DIR/report.html: loudest and quietest excerpts before/after/removed with spectrograms, "
        "and reference-free figures (noise floor, clicks, energy removed per band, DNSMOS for speech)",
    )
    p.add_argument(
        "--content",
        default=None,
        choices=["speech", "music"],
        help="what the files hold, for the report: DNSMOS is a speech measure and is left out for music "
        "(default: unknown, shown with that caveat)",
    )
    batch = p.add_argument_group("batches split over tasks (what each task of `make submit-denoise` runs)")
    batch.add_argument(
        "--file-list",
        default=None,
        metavar="TSV",
        help="restore the rows of this list (columns task, input, output relative to --output-dir; "
        "written by lightning_app.submit --denoise) instead of INPUTS",
    )
    batch.add_argument(
        "--task", type=int, default=None, metavar="I", help="with --file-list: only the rows of task I"
    )
    batch.add_argument(
        "--skip-complete",
        action="store_true",
        help="skip files whose output exists (it is complete: outputs get their name only when "
        "complete) instead of refusing them",
    )
    batch.add_argument(
        "--summary",
        default=None,
        metavar="CSV",
        help="append one row per file: file, output, status (restored|skipped-complete|failed), "
        "reason, seconds of audio, compute seconds, real-time factor, task",
    )
    args = p.parse_args(argv)
    if bool(args.inputs) == bool(args.file_list):
        p.error("give INPUTS or --file-list, not both" if args.inputs else "give INPUTS or --file-list")
    if args.task is not None and not args.file_list:
        p.error("--task picks rows of a --file-list")
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    if args.skip_complete and args.overwrite:
        p.error("--skip-complete keeps existing outputs, --overwrite replaces them: give one")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    tally = {"restored": 0, "files": 0}
    try:
        with stop_on_signals():
            return run(args, tally)
    except Interrupted as stop:  # one line and the shell's 128 + signal, not a traceback
        print(
            f"interrupted ({stop}): {tally['restored']} of {tally['files']} file(s) restored; "
            "nothing half-written left",
            file=sys.stderr,
        )
        return 128 + stop.signum


if __name__ == "__main__":
    sys.exit(main())
