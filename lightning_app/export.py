"""Export a checkpoint for the torch-free restore engine: one ONNX file with everything restoring needs.

    python -m lightning_app.export CKPT [-o DIR_OR_FILE]      (c2c-export, make export CKPT=...)

The file (NAME.onnx; by default beside the checkpoint, where `c2c-denoise --checkpoint NAME.ckpt` finds it)
holds the network and its settings (sample rate, STFT, the model card, the checkpoint's SHA-256). It is
written under a temporary name and kept only once ONNX Runtime restores test chunks as the checkpoint does
(the SI-SDR of its output against torch's is printed). `c2c-denoise --checkpoint NAME.onnx` restores with it
in an install without torch.
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parse_args(argv)
    try:
        checkpoint = Path(args.checkpoint) if args.checkpoint else bundled_model()
        path, agreement = export_model(checkpoint, args.output or checkpoint.parent)
    except (ValueError, OSError) as exc:  # a model or checkpoint that cannot be used, a place not writable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"exported {checkpoint} -> {path} ({path.stat().st_size / 2**20:.1f} MiB; restores its test chunks "
        f"as the checkpoint does to {agreement:.0f} dB SI-SDR)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
