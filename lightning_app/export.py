"""Export a checkpoint for the torch-free restore engine: one ONNX file with everything restoring needs.

    python -m lightning_app.export CKPT [-o DIR_OR_FILE]      (c2c-export, make export CKPT=...)

The file (NAME.onnx; by default beside the checkpoint, where `c2c-denoise --checkpoint NAME.ckpt` finds it)
holds the network and its settings (sample rate, STFT, the model card, the checkpoint's SHA-256). It is
written under a temporary name and kept only once ONNX Runtime restores test chunks as the checkpoint does
(the SI-SDR of its output against torch's is printed). `c2c-denoise --checkpoint NAME.onnx` restores with it
in an install without torch.

--int8 quantises a spectral model's convolutions (restoring/quantize.py): about a third less network time on
a CPU with 8-bit dot products. Its activation ranges are calibrated on procedural training clips of
--calibration EXPERIMENT, and it is kept only if its restores of procedural validation clips differ from the
float export's by at least 20 dB below the input. The bundled archive model ships so exported.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lightning_app.restoring.export import export_model  # torch and onnx: c2c-export needs the full suite
from lightning_app.restoring.networks import bundled_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", help="a .ckpt (default: the bundled archive model)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="a folder (gets NAME.onnx) or a .onnx path (default: beside CKPT)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise the convolutions to 8-bit integers (a spectral model): about a third less network "
        "time on a CPU, kept only if it restores procedural check clips close to the float export "
        "(restoring/quantize.py)",
    )
    p.add_argument(
        "--calibration",
        default="archive_fullband",
        metavar="EXPERIMENT",
        help="with --int8: the experiment whose procedural training clips calibrate the activation ranges "
        "(default: archive_fullband; at the model's sample rate)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    try:
        checkpoint = Path(args.checkpoint) if args.checkpoint else bundled_model()
        path, agreement = export_model(
            checkpoint, args.output or checkpoint.parent, int8=args.int8, calibration=args.calibration
        )
    except (ValueError, OSError) as exc:  # a model or checkpoint that cannot be used, a place not writable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    check = (
        f"its restores of procedural check clips differ from the float export's by {agreement:.0f} dB or "
        "more below the input"
        if args.int8
        else f"restores its test chunks as the checkpoint does to {agreement:.0f} dB SI-SDR"
    )
    print(f"exported {checkpoint} -> {path} ({path.stat().st_size / 2**20:.1f} MiB; {check})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
