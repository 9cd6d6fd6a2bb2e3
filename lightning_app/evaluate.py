"""Score checkpoints and classic baselines side by side on one test set.

    python -m lightning_app.evaluate [CKPT ...] [--experiment NAME] [--data DIR] [--clips N]
                                     [--content auto|speech|music] [--mix 1.0 0.5 0.3]
                                     [--output-dir DIR] [key=value ...]

The test set is the built-in fixed synthetic one, built from the data settings of --experiment
(default supervised_unet: 16 kHz procedural speech; archive_fullband: 44.1 kHz music and speech)
plus key=value overrides, disjoint from every run's training and validation draws and stratified
by content; or, with --data, a paired corpus: DIR/noisy and DIR/clean with matching file names,
read at the experiment's rate (without --experiment: the first checkpoint's). A pair that cannot
be scored (a file without its partner, an unreadable file, sample rates or lengths that differ,
NaN/Inf samples, a silent clean reference) is skipped with its reason in the report's Skipped table
and skipped.csv; the exit status is then 1 (2 when no pair could be evaluated). Every system sees
the same clips:

- the noisy input (the floor every gain is measured from),
- spectral gating (noisereduce, stationary and non-stationary) and a decision-directed Wiener filter,
- each checkpoint at each --mix value (dry/wet blend; mix 1 is the model alone); an export (.onnx, from
  c2c-export) restores on ONNX Runtime, as denoise runs it on a CPU, and is named with its suffix.

Content: the synthetic set's clips are labelled by its generator; a paired corpus's files by their
speech/ or music/ folder, else by --content speech|music, else (--content auto, the default) guessed
from each clean file (lightning_app.metrics.content: spectral stability, pauses, fricatives). The
report's first line and the console say which content, and whether it was labelled, set or guessed.

Scores per clip: SI-SDR, SNR (and their gain over the input), PESQ (wideband, at 16 kHz) and
STOI on speech clips only (they are speech measures: with no speech clip their columns are left
out), ViSQOL (v3 audio mode, MOS-LQO, every content, the first --visqol-clips clips; level-blind),
log-spectral distance, amplitude retention (out/clean RMS: 0.9-1.1 is the target; under 0.5 the
report says MUTING, over 1.25 LOUDER than the reference), removed-vs-clean corr (report.csv:
speech_removed; |correlation| between what was removed and the clean signal: 0 = only noise
removed), spectral correlation; processing time gives the real-time factor. A measure that fails
on a clip (PESQ on a clip with no utterance) leaves it out of its means: one console line, the
report counts the failures, and a mean over fewer clips than its table row says "n=". The output
folder gets report.md, report.csv (overall, per content, per noise type and per input-SNR bucket;
pesq_clips, stoi_clips, visqol_clips: the clips behind each mean) and PNG plots (and skipped.csv:
file, reason).

Beside the synthetic set, the real-recordings test set: clips of the corpus's test split (--real-corpus,
default data/real, built by `make corpus`) degraded by the experiment's noise generators at 0-30 dB,
reported per content and per 5-dB input-SNR bucket (mean SI-SDR gain, worst clip, clips made worse
than their input, retention) with a clean-input table; real.md (with each clip made worse, named with the
recording it was cut from) and real.csv; real_clips.csv has every clip's figures. Checkpoints restore with
the do-no-harm guard, as denoise does; --ablation adds each without it, and the guard alone;
--real-shelves-db adds the music clips mastered brighter or darker. With --real-split val, --real-snr-db,
--real-seed and --real-noise draw harder sets to look for the rare clips a model harms (e.g. --real-clips
700 --real-snr-db 10 25 --real-seed 777 --real-noise brown rumble: the music under low-frequency noise).

A --data folder without a clean/ subfolder holds real noisy files with no reference (DIR/noisy/ or DIR
itself; music/ and speech/ subfolders label the content, --content labels the rest; --content auto
leaves them unlabelled, and DNSMOS, a speech measure, is shown for speech only): each checkpoint (none
given: the bundled archive model) restores every file, at the first --mix value, into
OUTPUT/restored/<checkpoint>/ with its residual, and the listening report
(lightning_app.evaluation.listening_report) is written: report.html, opening with a one-line verdict,
with before/after/removed excerpts and spectrograms, and report.csv with the reference-free figures. A
file that cannot be restored or reported is a row with its reason; exit status 1 (2 when none could be).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lightning_app import config as C
from lightning_app.data.corpus import CorpusError, read_manifest
from lightning_app.evaluation.pipeline import evaluate, evaluate_chains, evaluate_folder, reference_free
from lightning_app.evaluation.test_sets import DEFAULT_EXPERIMENT, REAL_SEED, REAL_SNR_DB, RealDraw
from lightning_app.metrics.content import CHOICES as CONTENT_CHOICES


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoints",
        nargs="*",
        help="checkpoints (.ckpt) or exports (.onnx, restored on ONNX Runtime as denoise does) to score "
        "(none: baselines only)",
    )
    p.add_argument(
        "--experiment",
        default=None,
        help=f"whose data settings build the synthetic test set (default "
        f"{DEFAULT_EXPERIMENT}; archive_fullband: 44.1 kHz music and speech); with --data: the corpus's rate",
    )
    p.add_argument(
        "--data",
        default=None,
        help="a paired corpus: DIR/noisy and DIR/clean (default: synthetic test set); "
        "without DIR/clean: restore DIR's noisy files and write the listening report (report.html)",
    )
    p.add_argument(
        "--clips", type=int, default=None, help="number of clips (synthetic default 48; corpus: all)"
    )
    p.add_argument("--seconds", type=float, default=3.0, help="synthetic clip length")
    p.add_argument(
        "--mix", type=float, nargs="+", default=[1.0, 0.5, 0.3], help="dry/wet values per checkpoint"
    )
    p.add_argument("--output-dir", default="evaluation")
    p.add_argument("--workers", type=int, default=2, help="processes for PESQ/STOI/ViSQOL")
    p.add_argument(
        "--visqol-clips",
        type=int,
        default=16,
        help="ViSQOL on the first N clips, every system (about 2 s of CPU per 3-s clip and system; 0: off)",
    )
    p.add_argument("--no-baselines", action="store_true", help="only the checkpoints and the noisy input")
    p.add_argument(
        "--chains",
        nargs="*",
        default=None,
        metavar="KIND[:N_FFT[:HOP[:N_MELS]]]",
        help="reconstruction-chain analysis instead of model scoring (stft, magnitude, mel; "
        "no value: STFT, magnitude and mel at 64 and 128 mels); writes chains.md/.csv",
    )
    p.add_argument(
        "--audioldm2-dir",
        type=Path,
        default=None,
        help="local AudioLDM2 pipeline folder (vae/, vocoder/): adds its mel, VAE and HiFi-GAN chains "
        "(implies --chains; needs pip install '.[audioldm2]')",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=["cpu", "cuda", "auto"],
        help="where the checkpoints (and the AudioLDM2 VAE and vocoder) run; baselines and scores: the CPU",
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also each checkpoint without the do-no-harm guard, and the guard alone (over a model that "
        "removes everything): the guard's effect, on the procedural and the real test sets",
    )
    p.add_argument(
        "--real-corpus",
        type=Path,
        default=Path("data/real"),
        help="the corpus of real recordings (make corpus) whose test split makes the real test set "
        "(default data/real; missing: one line says how to build it, and the set is left out)",
    )
    p.add_argument(
        "--real-clips", type=int, default=36, help="real test clips per content (default 36, of 6 s)"
    )
    p.add_argument(
        "--real-split",
        choices=("test", "val"),
        default="test",
        help="the corpus split the real set is drawn from: test (default; report it, never tune on it) or "
        "val, the one to tune on (with --real-clips 200 it holds the failures 36 clips miss)",
    )
    p.add_argument(
        "--real-shelves-db",
        nargs="*",
        type=float,
        default=[],
        metavar="DB",
        help="also the real set's music clips brighter or darker: through a high shelf of each gain above "
        "5 kHz, same noise and SNR (e.g. 6 12: bright music is where a denoiser takes the top for hiss)",
    )
    p.add_argument(
        "--real-snr-db",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="with --real-split val: input SNRs spread over LOW-HIGH dB instead of the reported set's "
        f"{REAL_SNR_DB[0]:g}-{REAL_SNR_DB[1]:g} (a harder draw)",
    )
    p.add_argument(
        "--real-seed",
        type=int,
        metavar="N",
        help=f"with --real-split val: another draw of the val clips (the reported set's: {REAL_SEED})",
    )
    p.add_argument(
        "--real-noise",
        nargs="+",
        metavar="GENERATOR",
        help="with --real-split val: keep only the clips whose noise holds one of these generators "
        "(e.g. brown rumble; the names are the experiment's data.noise.procedural.generators)",
    )
    p.add_argument("--no-real", action="store_true", help="leave the real-recordings test set out")
    p.add_argument(
        "--content",
        choices=CONTENT_CHOICES,
        default="auto",
        help="content of --data files in no speech/ or music/ folder (those folders label their files): "
        "speech or music; auto (default) guesses each paired file from its clean reference and the report "
        "says so; without clean references, auto leaves them unlabelled (DNSMOS not shown). PESQ/STOI/DNSMOS "
        "are speech measures: computed on speech only",
    )
    p.add_argument("overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    return p.parse_intermixed_args(argv)


def real_draw(args) -> RealDraw:
    """The real set's draw the arguments ask for; ValueError (one line) before anything runs when a harder
    draw is asked of the test split or of a run that draws no real set, or under a noise the experiment
    lacks."""
    default = RealDraw()
    draw = RealDraw(
        snr_db=tuple(args.real_snr_db) if args.real_snr_db else default.snr_db,
        seed=default.seed if args.real_seed is None else args.real_seed,
        noise_types=tuple(args.real_noise or ()),
    )
    if draw.is_default:
        return draw
    flags = "--real-snr-db, --real-seed and --real-noise draw harder real sets to tune on"
    if args.real_split != "val":
        raise ValueError(f"{flags}: add --real-split val")
    if args.data is not None or args.no_real or args.chains is not None or args.audioldm2_dir is not None:
        raise ValueError(
            f"{flags}, and this run draws no real set (--data, --no-real, --chains or --audioldm2-dir)"
        )
    draw.check_noise(args.experiment or DEFAULT_EXPERIMENT)
    return draw


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        draw = real_draw(args)
    except (ValueError, C.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    checkpoints, overrides = [], []
    for item in args.checkpoints:  # key=value items are data overrides for the synthetic set
        (overrides if "=" in item and not Path(item).exists() else checkpoints).append(item)
    if args.chains is not None or args.audioldm2_dir is not None:
        from lightning_app.evaluation.chains import DEFAULT_CHAINS, build_chain, parse_chain

        try:
            specs = [parse_chain(c) for c in args.chains or []] or list(DEFAULT_CHAINS)
            chains = [(spec.name, build_chain(spec)) for spec in specs]
            if args.audioldm2_dir is not None:
                from lightning_app.evaluation.audioldm2 import AudioLDM2Codec

                chains += AudioLDM2Codec.load(args.audioldm2_dir, args.device).chains()
            result = evaluate_chains(
                Path(args.output_dir),
                chains,
                args.data,
                args.clips,
                args.seconds,
                args.workers,
                content=args.content,
            )
        except (FileNotFoundError, ValueError, ImportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(result["report"])
        return _skip_status(result["skipped"], result["evaluated"], Path(args.output_dir) / "chains.md")
    if args.data is not None and reference_free(Path(args.data)):
        try:
            result = evaluate_folder(
                [Path(c) for c in checkpoints],
                Path(args.data),
                Path(args.output_dir),
                args.mix[0],
                args.clips,
                content=args.content,
            )
        except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
            print(f"error: {exc}", file=sys.stderr)
            return 2
        skipped = [r for r in result["rows"] if r["status"] != "ok"]
        print(
            f"listening report: {result['page']} (+ {result['page'].with_name('report.csv')}): "
            f"{len(result['rows']) - len(skipped)} of {len(result['rows'])} file(s) reported"
        )
        print(result["content"])
        for row in skipped:
            print(f"skipped {row['label']}: {row['reason']}", file=sys.stderr)
        return 0 if not skipped else 2 if len(skipped) == len(result["rows"]) else 1
    real = None
    if args.data is None and not args.no_real:
        try:
            read_manifest(args.real_corpus)
            real = args.real_corpus
        except CorpusError as exc:
            print(f"real-recordings test set left out: {exc}", file=sys.stderr)
    try:
        result = evaluate(
            [Path(c) for c in checkpoints],
            Path(args.output_dir),
            args.data,
            args.clips,
            args.seconds,
            args.mix,
            args.workers,
            not args.no_baselines,
            overrides,
            args.experiment,
            args.visqol_clips,
            args.device,
            args.ablation,
            real,
            args.real_clips,
            content=args.content,
            real_split=args.real_split,
            real_shelves_db=tuple(args.real_shelves_db),
            real_draw=draw,
        )
    except (FileNotFoundError, ValueError, C.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result["report"].split("## SI-SDR improvement (dB) by noise type")[0])
    if result["real"]:
        print(result["real"]["report"])
    print(
        f"report: {Path(args.output_dir) / 'report.md'} "
        f"(+ report.csv, skipped.csv, {', '.join(result['plots'])})"
    )
    return _skip_status(result["skipped"], result["evaluated"], Path(args.output_dir) / "report.md")


def _skip_status(skipped: list[dict], evaluated: int, report: Path) -> int:
    """Exit status 1 and a one-line summary when pairs were skipped; 0 otherwise."""
    if not skipped:
        return 0
    print(f"evaluated {evaluated} pairs, skipped {len(skipped)} (see {report}#skipped)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
