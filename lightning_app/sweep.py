"""Hyper-parameter sweeps with Optuna: every trial is a normal training run.

    python -m lightning_app.sweep EXP SWEEP [key=value ...] [--use GROUP/NAME]

SWEEP names configs/sweep/<SWEEP>.yaml: the dotted config keys to vary and their ranges, the
objective metric and its direction, the number of trials, the sampler (grid / random / TPE)
and pruning. ``key=value`` arguments set the sweep's own fields (trials=16, sampler=random)
when the key is one of them, and otherwise override the experiment for every trial.

The study lives in SQLite under runs/sweeps/<EXP>-<SWEEP>/, or where the sweep's ``storage``
says (study_storage.py: a PostgreSQL URL or a journal file that workers on many nodes share);
each trial trains in runs/sweeps/<EXP>-<SWEEP>/trial_NNN/version_0 with its resolved config,
checkpoints and TensorBoard events (hyper-parameters in the HParams view). Any number of
workers may run the same command on the same study: each claims one trial at a time, and they
stop once ``trials`` trials have completed or been pruned, never more. A trial whose worker died
(its heartbeat stopped) is failed and queued again with the same values. Running the same
command again continues the study and adds nothing to a finished one. A ranked table of the
trials is printed at the end and written to trials.csv."""

from __future__ import annotations

import argparse
import logging
import sys

import optuna

from lightning_app import config as C
from lightning_app.training.run import TrainingInterrupted
from lightning_app.training.sweeps import SWEEP_DIR, SweepStopped, run_sweep


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = argparse.ArgumentParser(
        prog="python -m lightning_app.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment")
    p.add_argument("sweep", help=f"one of: {', '.join(sorted(x.stem for x in SWEEP_DIR.glob('*.yaml')))}")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--use", action="append", default=[], metavar="GROUP/NAME")
    args = p.parse_intermixed_args(argv)
    try:
        run_sweep(args.experiment, args.sweep, args.overrides, args.use)
    except C.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SweepStopped as exc:
        print(f"error: sweep stopped: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        print(
            f"interrupted (SIGTERM) during {stop.run_dir}: run the same command again to continue the study "
            "(finished trials are kept; this one is run again once its heartbeat has stopped)",
            file=sys.stderr,
        )
        return stop.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
