"""Hyper-parameter sweeps with Optuna: every trial is a normal training run.

    python -m lightning_app.sweep EXP SWEEP [key=value ...] [--use GROUP/NAME]

SWEEP names configs/sweep/<SWEEP>.yaml: the dotted config keys to vary and their ranges, the
objective metric and its direction, the number of trials, the sampler (grid / random / TPE)
and pruning. ``key=value`` arguments set the sweep's own fields (trials=16, sampler=random)
when the key is one of them, and otherwise override the experiment for every trial.

The study lives in SQLite under runs/sweeps/<EXP>-<SWEEP>/ (or the sweep's ``storage`` URL,
which many workers on many nodes can share); each trial trains in
runs/sweeps/<EXP>-<SWEEP>/trial_NNN/version_0 with its resolved config, checkpoints and
TensorBoard events (hyper-parameters in the HParams view). Running the same command again
continues the study: finished trials are kept, interrupted ones are tried again, and the sweep
stops once ``trials`` trials have completed or been pruned. A ranked table of the trials is
printed at the end and written to trials.csv.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import warnings
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from lightning_app import config as C
from lightning_app.train import train

log = logging.getLogger("lightning_app.sweep")

SWEEP_DIR = C.CONFIG_DIR / "sweep"
SWEEP_FIELDS = ("objective", "trials", "sampler", "sampler_seed", "pruning", "storage", "overrides", "params")
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def split_overrides(overrides) -> tuple[list[str], list[str]]:
    """key=value items -> (the sweep's own fields, overrides of every trial's experiment)."""
    own = [o for o in overrides if o.split("=", 1)[0].split(".")[0] in SWEEP_FIELDS]
    return own, [o for o in overrides if o not in own]


def load_sweep(name: str, overrides: list[str]) -> DictConfig:
    path = SWEEP_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SWEEP_DIR.glob("*.yaml")))
        raise C.ConfigError(f"no sweep '{name}' ({path} not found); known: {known}")
    sweep = OmegaConf.load(path)
    unknown = sorted(set(sweep) - set(SWEEP_FIELDS))
    if unknown:
        raise C.ConfigError(f"{path}: unknown field(s) {unknown}; known: {list(SWEEP_FIELDS)}")
    sweep.merge_with(OmegaConf.from_dotlist(overrides))
    if sweep.sampler not in ("grid", "random", "tpe"):
        raise C.ConfigError(f"{path}: sampler must be grid, random or tpe, got {sweep.sampler!r}")
    for key, spec in sweep.params.items():
        if spec.type not in ("float", "int", "categorical"):
            raise C.ConfigError(f"{path}: {key}: type must be float, int or categorical")
        if sweep.sampler == "grid" and spec.type != "categorical":
            raise C.ConfigError(f"{path}: the grid sampler needs categorical choices; {key} is {spec.type}")
    return sweep


def suggest(trial: optuna.Trial, params: DictConfig) -> list[str]:
    """Sampled values as key=value overrides."""
    out = []
    for key, spec in params.items():
        if spec.type == "categorical":
            value = trial.suggest_categorical(key, list(spec.choices))
        elif spec.type == "int":
            value = trial.suggest_int(key, int(spec.low), int(spec.high), log=bool(spec.get("log", False)))
        else:
            value = trial.suggest_float(key, float(spec.low), float(spec.high), log=bool(spec.get("log", False)))
        out.append(f"{key}={value}")
    return out


def make_sampler(sweep: DictConfig) -> optuna.samplers.BaseSampler:
    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler({k: list(v.choices) for k, v in sweep.params.items()}, seed=sweep.sampler_seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=sweep.sampler_seed)
    return optuna.samplers.TPESampler(seed=sweep.sampler_seed)


def open_study(name: str, sweep: DictConfig, directory: Path) -> optuna.Study:
    url = sweep.storage or f"sqlite:///{directory / 'study.db'}"
    directory.mkdir(parents=True, exist_ok=True)
    # Heartbeats mark the trials of a killed worker as failed; the callback queues them again.
    storage = RDBStorage(url, heartbeat_interval=30, grace_period=60,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if sweep.pruning \
        else optuna.pruners.NopPruner()
    return optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(sweep), pruner=pruner,
                               direction=sweep.objective.direction, load_if_exists=True)


def run_sweep(experiment: str, sweep_name: str, overrides: list[str] = (), blocks: list[str] = (),
              root: str | None = None) -> list[dict]:
    sweep_fields, run_overrides = split_overrides(overrides)
    sweep = load_sweep(sweep_name, sweep_fields)
    probe = C.compose(experiment, [*sweep.overrides, *run_overrides], blocks=list(blocks))
    if probe.trainer.strategy not in ("auto", None) and "ddp" in str(probe.trainer.strategy):
        raise C.ConfigError("a sweep runs its trials in this process; DDP would re-run the sweep in every rank "
                            "and sample different values there. Sweep with one device per trial (start more "
                            "workers on the same study for more GPUs).")
    name = f"{experiment}-{sweep_name}"
    directory = Path(root or probe.run.root) / "sweeps" / name
    study = open_study(name, sweep, directory)
    with warnings.catch_warnings():  # fail_stale_trials is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials left RUNNING by an interrupted run of this command
    metric = sweep.objective.metric

    def objective(trial: optuna.Trial) -> float:
        sampled = suggest(trial, sweep.params)
        cfg = C.compose(experiment, [*sweep.overrides, *run_overrides, *sampled], blocks=list(blocks))
        cfg.run.root = str(directory)
        cfg.experiment = f"trial_{trial.number:03d}"
        pruning = PyTorchLightningPruningCallback(trial, monitor=metric)
        result = train(cfg, extra_callbacks=[pruning])
        trial.set_user_attr("run_dir", str(result["run_dir"]))
        value = result["metrics"].get(metric, math.nan)
        if not math.isfinite(value):
            raise RuntimeError(f"trial {trial.number}: objective {metric} was not logged or is not finite")
        return value

    done = len(study.get_trials(deepcopy=False, states=DONE))
    if done < sweep.trials:
        log.info("sweep %s: %d of %d trials done; running the rest", name, done, sweep.trials)
        study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(sweep.trials, states=DONE)],
                       catch=(RuntimeError,))
    else:
        log.info("sweep %s: all %d trials already done", name, sweep.trials)
    return report(study, sweep, directory)


def report(study: optuna.Study, sweep: DictConfig, directory: Path) -> list[dict]:
    """Trials ranked by the objective (pruned and failed ones last); printed and written to trials.csv."""
    maximize = sweep.objective.direction == "maximize"
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "state": t.state.name, sweep.objective.metric: t.value,
                     **{k: t.params.get(k) for k in sweep.params}, "run_dir": t.user_attrs.get("run_dir", "")})

    def rank(row):
        value = row[sweep.objective.metric]
        complete = row["state"] == "COMPLETE" and value is not None
        return (not complete, -value if complete and maximize else (value if complete else 0.0))

    rows.sort(key=rank)
    with open(directory / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    columns = ["trial", "state", sweep.objective.metric, *sweep.params]
    print("\n| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|")
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")
    print(f"\ntrials: {directory / 'trials.csv'}   TensorBoard: tensorboard --logdir {directory}")
    return rows


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = argparse.ArgumentParser(prog="python -m lightning_app.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
