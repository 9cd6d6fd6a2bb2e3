"""Hyper-parameter sweeps with Optuna: every trial is a normal training run (``training.run.train``).

Workers claim one trial at a time on a shared study (``training.study_storage``), stop once the sweep's
trial count is complete or pruned, and requeue a trial whose worker's heartbeat stopped with the same
values. The command line, and what a sweep file holds, is ``lightning_app.sweep``.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from lightning_app import config as C
from lightning_app.data import audio_io
from lightning_app.evaluation import tables
from lightning_app.training import study_storage
from lightning_app.training.console import tensorboard_hint
from lightning_app.training.run import train

log = logging.getLogger(__name__)

SWEEP_DIR = C.CONFIG_DIR / "sweep"

SWEEP_FIELDS = (
    "objective",
    "trials",
    "sampler",
    "sampler_seed",
    "pruning",
    "storage",
    "heartbeat",
    "overrides",
    "params",
)

# Fields a sweep file may leave out (the bundled ones spell them out).
OPTIONAL_FIELDS = {"storage": None, "heartbeat": 30}

DONE = (TrialState.COMPLETE, TrialState.PRUNED)

POLL_S = 5.0  # how often a worker with nothing to start looks at the trials still running elsewhere


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
    try:
        sweep = OmegaConf.merge(OPTIONAL_FIELDS, sweep, OmegaConf.from_dotlist(overrides))
        OmegaConf.resolve(
            sweep
        )  # e.g. storage: ${oc.env:C2C_SWEEP_STORAGE}; a missing variable is named here
    except OmegaConfBaseException as exc:
        raise C.ConfigError(f"{path}: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    given = {o.split("=", 1)[0].split(".")[0] for o in overrides}

    def where(field: str) -> str:  # a bad value is blamed on where it was written
        return "on the command line" if field in given else f"in {path}"

    def whole(field: str, low: int) -> bool:
        value = sweep[field]
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not whole("heartbeat", 1):
        raise C.ConfigError(
            f"heartbeat must be a whole number of seconds >= 1, got {sweep.heartbeat!r} "
            f"({where('heartbeat')})"
        )
    if not whole("trials", 1):
        raise C.ConfigError(f"trials must be a whole number >= 1, got {sweep.trials!r} ({where('trials')})")
    if sweep.sampler not in ("grid", "random", "tpe"):
        raise C.ConfigError(
            f"sampler must be grid, random or tpe, got {sweep.sampler!r} ({where('sampler')})"
        )
    for key, spec in sweep.params.items():
        if spec.type not in ("float", "int", "categorical"):
            raise C.ConfigError(f"params: {key}: type must be float, int or categorical ({where('params')})")
        if sweep.sampler == "grid" and spec.type != "categorical":
            raise C.ConfigError(
                f"the grid sampler needs categorical choices; {key} is {spec.type} "
                f"(sampler={sweep.sampler} {where('sampler')})"
            )
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
            value = trial.suggest_float(
                key, float(spec.low), float(spec.high), log=bool(spec.get("log", False))
            )
        out.append(f"{key}={value}")
    return out


def make_sampler(sweep: DictConfig, trial_number: int | None = None) -> optuna.samplers.BaseSampler:
    """The sweep's sampler; seeded by (sampler_seed, trial number) when both are given, so workers that
    start together draw different values and every trial's draw is reproducible whichever worker runs it."""
    seed = sweep.sampler_seed
    if seed is not None and trial_number is not None:
        seed = int(np.random.SeedSequence([int(seed), trial_number]).generate_state(1)[0])
    if sweep.sampler == "grid":
        return optuna.samplers.GridSampler({k: list(v.choices) for k, v in sweep.params.items()}, seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(
    name: str, sweep: DictConfig, directory: Path, storage: study_storage.StudyStorage
) -> optuna.Study:
    """Create or load the study; ``storage`` has been checked, so only now does anything get created."""
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if sweep.pruning
        else optuna.pruners.NopPruner()
    )
    made = directory  # the outermost folder this call makes
    while not made.parent.exists() and made.parent != made.parent.parent:
        made = made.parent
    new = not made.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.create_study(
            study_name=name,
            storage=study_storage.open_storage(storage, sweep.heartbeat),
            sampler=make_sampler(sweep),
            pruner=pruner,
            direction=sweep.objective.direction,
            load_if_exists=True,
        )
    except BaseException:
        if new:  # a study that could not be set up leaves no folder for the next try to trip over
            shutil.rmtree(made, ignore_errors=True)
        raise


def fail_stale_trials(study: optuna.Study) -> None:
    """Trials whose worker stopped beating become FAIL, and a copy of each is queued (the retry callback)."""
    with warnings.catch_warnings():  # fail_stale_trials is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


MAX_FAILURES_IN_A_ROW = 3


class SweepStopped(RuntimeError):
    """A worker gave up: its trials keep failing (the cause is in the run, not in the values drawn)."""


def run_trials(
    study: optuna.Study,
    objective,
    target: int,
    claim,
    sampler_for,
    grace_s: float,
    max_failures: int = MAX_FAILURES_IN_A_ROW,
) -> int:
    """Run trials one at a time until ``target`` are done or running elsewhere; returns how many ran here.

    ``claim()`` is a lock shared by every worker on the study, held from counting the trials until the new
    trial is RUNNING: two workers never both start the trial that completes the study, and the new trial's
    number is known while it is held, so ``sampler_for(number)`` seeds its draw. Queued retries (WAITING)
    are taken before new samples. A worker with nothing left to start leaves once each trial still running
    elsewhere has kept beating for ``grace_s`` after it first saw it: a worker that had just died is caught
    and its trial run here, while idling costs at most one grace period. ``max_failures`` trials failing in a
    row here (their objective raised RuntimeError) raise SweepStopped.
    """
    ran, announced, failed_in_a_row = 0, False, 0
    first_seen: dict[int, float] = {}
    while True:
        with contextlib.ExitStack() as held:
            held.enter_context(claim())
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            done = sum(t.state in DONE for t in trials)
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            if done + len(running) < target:
                study.sampler = sampler_for(len(trials))  # no other worker can add a trial meanwhile

                failed: list[str] = []

                def claimed(trial: optuna.Trial, failed: list[str] = failed) -> float:
                    held.close()  # the trial is RUNNING now: let the next worker count it
                    try:
                        return objective(trial)
                    except RuntimeError as exc:
                        failed.append(f"trial {trial.number}: {exc}")
                        raise

                study.optimize(claimed, n_trials=1, catch=(RuntimeError,))
                ran += 1
                # A failed trial does not count towards the target, so a cause that fails every trial would
                # have the worker start trials for ever: it stops after a few failures in a row.
                failed_in_a_row = failed_in_a_row + 1 if failed else 0
                if failed_in_a_row >= max_failures:
                    raise SweepStopped(
                        f"the last {failed_in_a_row} trials this worker ran failed ({failed[0]}); "
                        "fix the cause and run the same command again (finished trials are kept)"
                    )
                continue
            now = time.monotonic()
            unproven = [n for n in running if now - first_seen.setdefault(n, now) < grace_s]
            if done >= target or not unproven:
                return ran
            proof = max(grace_s - (now - first_seen[n]) for n in unproven) + 0.5
            if not announced:
                log.info(
                    "trial(s) %s run on other workers; leaving when they finish or, at most %.0f s from now, "
                    "when their heartbeats show them alive",
                    ", ".join(map(str, unproven)),
                    proof,
                )
                announced = True
        time.sleep(min(proof, POLL_S))  # and leave as soon as they finish


def run_sweep(
    experiment: str,
    sweep_name: str,
    overrides: list[str] = (),
    blocks: list[str] = (),
    root: str | None = None,
) -> list[dict]:
    sweep_fields, run_overrides = split_overrides(overrides)
    sweep = load_sweep(sweep_name, sweep_fields)
    probe = C.compose(experiment, [*sweep.overrides, *run_overrides], blocks=list(blocks))
    if probe.trainer.strategy not in ("auto", None) and "ddp" in str(probe.trainer.strategy):
        raise C.ConfigError(
            "a sweep runs its trials in this process; DDP would re-run the sweep in every rank "
            "and sample different values there. Sweep with one device per trial (start more "
            "workers on the same study for more GPUs)."
        )
    name = f"{experiment}-{sweep_name}"
    C.check_folder(root or probe.run.root, "run.root")
    directory = Path(root or probe.run.root) / "sweeps" / name
    storage = study_storage.parse(sweep.storage, directory)
    study_storage.check(storage)  # a bad URL or an unreachable server stops here, before anything exists
    study = open_study(name, sweep, directory, storage)
    metric = sweep.objective.metric
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> float:
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        retry_of = frozen.system_attrs.get("failed_trial")  # set by the retry callback on the copy it queues
        trial.set_user_attr("worker", worker)
        log.info(
            "trial %d: started by worker %s%s",
            trial.number,
            worker,
            "" if retry_of is None else f" (retrying trial {retry_of}, whose worker stopped)",
        )
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
    log.info("sweep %s: study in %s; %d of %d trials done", name, storage.shown, done, sweep.trials)
    ran = run_trials(
        study,
        objective,
        sweep.trials,
        lambda: study_storage.claim_lock(storage, name),
        lambda number: make_sampler(sweep, number),
        grace_s=2 * sweep.heartbeat,
    )
    done = len(study.get_trials(deepcopy=False, states=DONE))
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    log.info(
        "sweep %s: worker %s ran %d trial(s); %d of %d done%s",
        name,
        worker,
        ran,
        done,
        sweep.trials,
        f", {running} still running on other workers" if running else "",
    )
    return report(study, sweep, directory)


def report(study: optuna.Study, sweep: DictConfig, directory: Path) -> list[dict]:
    """Trials ranked by the objective (pruned and failed ones last); printed and written to trials.csv."""
    maximize = sweep.objective.direction == "maximize"
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                sweep.objective.metric: t.value,
                **{k: t.params.get(k) for k in sweep.params},
                "run_dir": t.user_attrs.get("run_dir", ""),
                "worker": t.user_attrs.get("worker", ""),
            }
        )

    def rank(row):
        value = row[sweep.objective.metric]
        complete = row["state"] == "COMPLETE" and value is not None
        return (not complete, -value if complete and maximize else (value if complete else 0.0))

    rows.sort(key=rank)
    # Workers finishing together each write the table: through a file of their own, replaced at once.
    with audio_io.atomic_text(directory / "trials.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    columns = ["trial", "state", sweep.objective.metric, *sweep.params]
    print(
        "\n"
        + "\n".join(
            tables.markdown(
                columns,
                [[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows],
            )
        )
    )
    print(f"\ntrials: {directory / 'trials.csv'}   TensorBoard: {tensorboard_hint(directory)}")
    return rows
