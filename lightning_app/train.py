"""The one training entry point: config -> data, system, callbacks, logger, Trainer -> fit.

    python -m lightning_app.train EXPERIMENT [key=value ...] [--use GROUP/NAME]
                                  [--resume | --resume-from RUN_DIR|CKPT]

Every run lives in runs/<experiment>/<version>/ with the resolved config.yaml, TensorBoard
events and checkpoints/{best,last}.ckpt. --resume continues the latest run of the
experiment that has a last.ckpt: same directory, same TensorBoard curves, and the saved
config (command-line overrides still apply on top); --resume-from names the run or checkpoint."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lightning_app import config as C
from lightning_app.training.run import (
    TrainingInterrupted,
    close_process_group,
    resolve_experiment,
    run_experiment,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_app.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "experiment",
        help=f"one of: {', '.join(C.available_experiments())}; or a YAML file of your own "
        "(only what differs from configs/defaults.yaml, like those in experiments/)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_epochs=3")
    parser.add_argument(
        "--use",
        action="append",
        default=[],
        metavar="GROUP/NAME",
        help="apply a building block from configs/, e.g. trainer/gpu (repeatable)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the latest run that has a last.ckpt")
    parser.add_argument(
        "--resume-from",
        metavar="RUN_DIR|CKPT",
        help="continue the given run directory (its last.ckpt) or checkpoint in one",
    )
    parser.add_argument(
        "--resume-if-exists",
        action="store_true",
        help="with run.version=...: resume that run if it has a last.ckpt, else start it (job scripts)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    argv = sys.argv[1:] if argv is None else list(argv)
    if hint := C.foreign_form(argv):  # one line, not argparse's usage block
        print(f"error: {hint}", file=sys.stderr)
        raise SystemExit(2)
    return parser.parse_intermixed_args(argv)  # options may sit between the overrides


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        cfg, resume = resolve_experiment(
            args.experiment,
            args.overrides,
            args.use,
            resume=args.resume,
            resume_from=args.resume_from,
            resume_if_exists=args.resume_if_exists,
        )
        if args.print_config:
            print(C.OmegaConf.to_yaml(cfg))
            return 0
        run_experiment(cfg, args.overrides, args.use, resume)
    except (C.ConfigError, FileNotFoundError) as exc:  # a data folder or corpus that is not there: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:
        print(stop.describe(), file=sys.stderr)
        return stop.code
    close_process_group()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    sys.exit(main())
