"""Score checkpoints side by side on a fixed evaluation set, with the training metrics.

    python -m lightning_app.evaluate CKPT [CKPT ...] [--split val|test] [--clips N] [--output-dir DIR]

Each checkpoint is scored on the set its own run validated on (the run's config.yaml next
to checkpoints/), or on the default synthetic set when it has no run directory. All
waveform metrics and PESQ/STOI on every clip; the noisy input's scores are the baseline
row. Writes report.md and report.csv into --output-dir (default: evaluation/).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from pathlib import Path

import lightning as L

from lightning_app import config as C
from lightning_app.callbacks import PerceptualQuality, WaveformQuality
from lightning_app.denoise import load_system
from lightning_app.train import build_datamodule

log = logging.getLogger("lightning_app.evaluate")

COLUMNS = ("si_sdr", "si_sdr_i", "snr", "snr_i", "pesq", "pesq_i", "stoi", "stoi_i",
           "amplitude_retention", "speech_removed", "spectral_correlation")


def run_config(checkpoint: Path, overrides: list[str]):
    saved = checkpoint.parent.parent / "config.yaml"
    if saved.is_file():
        return C.compose_saved(saved, overrides)
    return C.compose("supervised_unet", overrides)


def evaluate_checkpoint(checkpoint: Path, split: str = "val", overrides: list[str] = (), workers: int = 2) -> dict:
    cfg = run_config(checkpoint, list(overrides))
    system = load_system(checkpoint)
    datamodule = build_datamodule(cfg, system)
    clips = cfg.data.val_clips
    callbacks = [WaveformQuality(cfg.metrics.silent_clean_rms),
                 PerceptualQuality(cfg.data.sample_rate, clips=clips, workers=workers)]
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        use_distributed_sampler=False)
    start = time.perf_counter()
    if split == "val":
        trainer.validate(system, datamodule=datamodule, verbose=False)
    else:
        trainer.test(system, datamodule=datamodule, verbose=False)
    seconds = time.perf_counter() - start
    prefix = "val" if split == "val" else "test"
    metrics = {k.split("/", 1)[1]: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix + "/")}
    metrics["eval_seconds"] = seconds
    metrics["clips"] = clips
    return metrics


def rows_for(name: str, metrics: dict) -> list[dict]:
    """The model's row and the noisy input's row (the baseline every score is measured against)."""
    model = {"system": name, **{c: metrics.get(c, math.nan) for c in COLUMNS}}
    noisy = {"system": "noisy input", **{c: math.nan for c in COLUMNS}}
    for base in ("si_sdr", "snr", "pesq", "stoi"):
        noisy[base] = metrics.get(f"{base}_input", math.nan)
        noisy[f"{base}_i"] = 0.0
    noisy["amplitude_retention"] = math.nan
    return [noisy, model]


def write_reports(rows: list[dict], output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["system", *COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    header = "| system | " + " | ".join(COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = ["–" if isinstance(r[c], float) and math.isnan(r[c]) else f"{r[c]:.3f}" for c in COLUMNS]
        lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    (output_dir / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m lightning_app.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--split", choices=["val", "test"], default="val",
                   help="val: the run's validation set; test: a disjoint synthetic set from the same seed")
    p.add_argument("--clips", type=int, default=None, help="number of clips (default: the run's data.val_clips)")
    p.add_argument("--output-dir", default="evaluation")
    p.add_argument("--workers", type=int, default=2, help="processes for PESQ/STOI")
    p.add_argument("overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    overrides = list(args.overrides) + ([f"data.val_clips={args.clips}"] if args.clips else [])
    rows = []
    for ckpt in args.checkpoints:
        path = Path(ckpt)
        try:
            metrics = evaluate_checkpoint(path, args.split, overrides, args.workers)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        name = f"{path.parent.parent.parent.name}/{path.parent.parent.name}/{path.stem}"
        new = rows_for(name, metrics)
        rows += new[1:] if rows else new
    write_reports(rows, Path(args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
