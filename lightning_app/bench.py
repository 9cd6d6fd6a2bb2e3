"""Benchmarks that print numbers (no pass/fail): data throughput, training step, restoration speed.

    python -m lightning_app.bench [--experiment archive_fullband] [--device cpu|cuda] [--fed-steps N]
                                  [key=value ...]

Medians over repeats, measured in this one run; compare ratios, not absolute times,
across machines."""

from __future__ import annotations

import argparse

import torch

from lightning_app import config as C
from lightning_app.evaluation.speed import (
    bench_data,
    bench_engines,
    bench_fed_training,
    bench_restore,
    bench_restore_file,
    bench_train_step,
)
from lightning_app.training.run import build_datamodule, build_system


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--experiment", default="archive_fullband")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=5, help="timed training steps")
    p.add_argument("--fed-steps", type=int, default=0, help="also time this many steps fed by the DataLoader")
    p.add_argument(
        "--audio-seconds", type=float, default=30.0, help="length restored for the real-time factor"
    )
    p.add_argument(
        "--long-file-minutes",
        type=float,
        action="append",
        default=[],
        help="also restore a generated stereo file this long with the CLI, in a child "
        "process, and report its peak memory (repeatable)",
    )
    p.add_argument(
        "--long-file-rate",
        type=int,
        default=48000,
        help="its sample rate (default 48000, a transfer resampled for a 44.1 kHz model; "
        "44100 is the archive model's own rate)",
    )
    p.add_argument(
        "--engine-file-minutes",
        type=float,
        default=10.0,
        help="restore a generated 44.1 kHz stereo file this long with the bundled model through the CLI, "
        "once per engine (onnx, torch on --device), beside DeepFilterNet3's C runtime on the same file "
        "(0: skip)",
    )
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)

    cfg = C.compose(args.experiment, args.overrides)
    device = torch.device(args.device)
    system = build_system(cfg)
    print(f"c2c-denoise bench: {args.experiment}, device {device}, torch threads {torch.get_num_threads()}")
    # First, while this process is small (the children report their own peak, but forking a process that
    # holds the source bank's gigabytes is slow and may not fit).
    for minutes in args.long_file_minutes:
        long = bench_restore_file(system, minutes * 60, args.long_file_rate, 2, args.device)
        print(
            f"  long file: {minutes:g} min, {args.long_file_rate / 1000:g} kHz stereo, "
            "CLI in a child process: "
            f"real-time factor {long['rtf']:.3f} ({long['restore_rtf']:.3f} restoring only), peak RSS "
            f"{long['peak_rss_mb']:.0f} MB (its imports alone: {long['import_rss_mb']:.0f} MB)"
        )
    if args.engine_file_minutes:
        _print_engines(bench_engines(args.engine_file_minutes * 60, device=args.device), args)
    datamodule = build_datamodule(cfg, system)
    data = bench_data(datamodule, examples=30)
    mix = ", ".join(f"{k} {w:g}" for k, w in cfg.data.clean.mix.items() if w > 0)
    bank = (
        f"crops of a {cfg.data.source_bank}-segment bank" if cfg.data.source_bank else "generated per example"
    )
    print(
        f"  data:     {data['segments_per_s_per_worker']:.1f} segments/s per worker "
        f"({data['segment_seconds']:.2f} s segments at {cfg.data.sample_rate / 1000:g} kHz, "
        f"clean {mix}, {bank})"
    )
    if cfg.data.source_bank:
        fresh = bench_data(
            build_datamodule(C.compose(args.experiment, [*args.overrides, "data.source_bank=0"]), system),
            examples=30,
        )
        print(
            f"            without the bank: {fresh['segments_per_s_per_worker']:.1f} segments/s per worker "
            f"(bank filled in {data['bank_fill_s']:.1f} s)"
        )
    step = bench_train_step(system, datamodule, device, args.steps, cfg.trainer.precision)
    print(
        f"  training: {step['train_step_s'] * 1000:.0f} ms per step (batch {step['batch_size']}), "
        f"{step['train_samples_per_s']:.1f} segments/s"
    )
    needed = step["train_samples_per_s"] / data["segments_per_s_per_worker"]
    print(f"            workers needed to keep up: {needed:.2f} (data.num_workers = {cfg.data.num_workers})")
    if args.fed_steps:
        fed = bench_fed_training(system, datamodule, device, args.fed_steps, cfg.trainer.precision)
        print(
            f"  fed:      {fed['fed_samples_per_s']:.1f} segments/s through the DataLoader "
            f"({args.fed_steps} steps, {cfg.data.num_workers} workers): "
            f"{fed['fed_samples_per_s'] / step['train_samples_per_s']:.0%} of compute-only throughput"
        )
    restore = bench_restore(system, device, args.audio_seconds)
    for (rate, channels), value in restore.items():
        print(
            f"  restore:  real-time factor {value:.4f} for {rate / 1000:g} kHz "
            f"{'stereo' if channels == 2 else 'mono'} "
            f"input, {system.sample_rate / 1000:g} kHz model (seconds of compute per second of audio; "
            f"{1 / value:.0f}x faster than real time)"
        )
    return 0


def _print_engines(results: dict, args) -> None:
    print(
        f"  engines:  the bundled model on a {args.engine_file_minutes:g}-min 44.1 kHz stereo file, CLI in a "
        "child process (real-time factor from the process's start, i.e. with start-up; restoring only in "
        "brackets)"
    )
    for engine in ("onnx", "torch"):
        r = results[engine]
        where = "ONNX Runtime, CPU" if engine == "onnx" else f"torch, {args.device}"
        print(
            f"            {engine:5s} ({where}): real-time factor {r['rtf']:.4f} ({r['restore_rtf']:.4f}), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB, first block written {r['first_block_s']:.2f} s after start"
        )
    print(f"            the two engines' outputs agree to {results['agreement_db']:.1f} dB SI-SDR")
    df = results.get("deepfilternet3", {})
    if "missing" in df:
        print(f"            DeepFilterNet3: not measured ({df['missing']})")
    elif df:
        onnx = results["onnx"]
        print(
            f"            DeepFilterNet3 (C runtime, streamed): real-time factor {df['rtf']:.4f}, peak RSS "
            f"{df['peak_rss_mb']:.0f} MB; the ONNX engine is {df['rtf'] / onnx['rtf']:.2f}x its speed "
            f"at {onnx['peak_rss_mb'] / df['peak_rss_mb']:.2f}x its peak memory"
        )


if __name__ == "__main__":
    raise SystemExit(main())
