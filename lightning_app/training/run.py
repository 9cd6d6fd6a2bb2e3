"""Training: config -> data, system, callbacks, logger, Trainer -> fit; resuming, stage sequences, summaries.

``train`` is the one place a Trainer is built. Every run lives in runs/<experiment>/<version>/ with the
resolved config.yaml, TensorBoard events and checkpoints/{best,last}.ckpt. The command line is
``lightning_app.train``.
"""

from __future__ import annotations

import atexit
import json
import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lightning_app import config as C
from lightning_app.data.corpus import CorpusError, read_manifest
from lightning_app.data.datamodule import DenoiseDataModule
from lightning_app.data.sources import corpus_contents
from lightning_app.evaluation import tables
from lightning_app.metrics.quality import metric_contents
from lightning_app.systems.base import DenoiseSystem
from lightning_app.systems.checkpoints import CheckpointError, describe_mismatch, read_checkpoint
from lightning_app.systems.registry import system_class
from lightning_app.training import dashboard
from lightning_app.training.callbacks import (
    AudioExamples,
    EpochSummary,
    OverSuppressionAlarm,
    PerceptualQuality,
    RNGState,
    WaveformQuality,
)
from lightning_app.training.callbacks.console import (
    EpochProgressBar,
    LayerSummary,
    ResultsText,
    final_lines,
    result_line,
)
from lightning_app.training.console import quiet_output, quiet_third_party, smoothing_note, tensorboard_hint
from lightning_app.training.run_dirs import (
    BEST,
    LAST,
    experiment_dir,
    latest_resumable,
    next_version,
    run_versions,
)

log = logging.getLogger(__name__)


class TrainingInterrupted(SystemExit):
    """SIGTERM stopped a run (kill, timeout, a scheduler outside Slurm). Lightning stops its loops with an
    exit status of 0, which a job script takes for a finished run; this one exits 143 (128 + SIGTERM)
    wherever it is not caught, and carries what a resume needs."""

    def __init__(self, run_dir: Path, experiment: str):
        super().__init__(128 + 15)
        self.run_dir = run_dir
        self.experiment = experiment
        self.checkpoint = run_dir / "checkpoints" / LAST
        self.resume_args = f"--resume-from {run_dir}"  # a sequence of stages continues with --resume

    def describe(self) -> str:
        """One line: the last checkpoint and the command that continues from it."""
        if not self.checkpoint.is_file():
            return (
                f"interrupted (SIGTERM) before the first epoch ended: {self.run_dir} has no checkpoint; "
                f"start again with: python -m lightning_app.train {self.experiment}"
            )
        epoch = int(read_checkpoint(self.checkpoint, for_resume=True)["epoch"]) + 1
        return (
            f"interrupted (SIGTERM): the last checkpoint is {self.checkpoint} (after epoch {epoch}); "
            f"continue with: python -m lightning_app.train {self.experiment} {self.resume_args}"
        )


def resolve_resume(target: str, cfg: DictConfig) -> tuple[Path, Path]:
    """(run_dir, checkpoint) to continue: 'latest' (--resume), a run directory or a .ckpt file
    (--resume-from).

    The checkpoint is read and checked here, before anything in the run directory is touched.
    """
    if target == "latest":
        run_dir = latest_resumable(experiment_dir(cfg))
        if run_dir is None:
            raise C.ConfigError(
                f"nothing to resume: no run under {experiment_dir(cfg)} has checkpoints/{LAST}. "
                f"Start one with: make train EXP={cfg.experiment}"
            )
        checkpoint = run_dir / "checkpoints" / LAST
    else:
        path = Path(target)
        if path.is_file():
            run_dir, checkpoint = path.parent.parent, path
            if path.parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
                raise C.ConfigError(
                    f"--resume-from {target}: not inside a run directory (<run>/checkpoints/*.ckpt next "
                    f"to <run>/config.yaml). To start a new run from its weights: "
                    f"system.init_from={target}"
                )
        elif (path / "checkpoints" / LAST).is_file():
            run_dir, checkpoint = path, path / "checkpoints" / LAST
        else:
            raise C.ConfigError(
                f"--resume-from {target}: expected a run directory with checkpoints/{LAST} "
                f"or a .ckpt file in one"
            )
    check_resumable(checkpoint)
    return run_dir, checkpoint


def check_resumable(checkpoint: Path) -> dict:
    """The checkpoint's contents, or one line naming it, what is wrong, and the fallback to type."""
    try:
        return read_checkpoint(checkpoint, for_resume=True)
    except CheckpointError as exc:
        fallback = ""
        for other in sorted(checkpoint.parent.glob("*.ckpt")):
            if other == checkpoint:
                continue
            try:
                epoch = int(read_checkpoint(other, for_resume=True)["epoch"]) + 1
            except CheckpointError:
                continue
            fallback = (
                f". {other.name} is intact (saved after epoch {epoch}; any epoch after it is trained "
                f"again); to continue from it: --resume-from {other}"
            )
            break
        raise C.ConfigError(f"cannot resume: {exc}{fallback}") from None


def resolve_init_from(spec: str, root: str) -> Path:
    """system.init_from: 'latest:<experiment>' (its newest run's best.ckpt) or a checkpoint path."""
    if spec.startswith("latest:"):
        experiment = spec.split(":", 1)[1]
        exp_dir = Path(root) / experiment
        for _, path in reversed(run_versions(exp_dir)):
            if (path / "checkpoints" / BEST).is_file():
                return path / "checkpoints" / BEST
        raise C.ConfigError(
            f"system.init_from={spec}: no run of {experiment} has checkpoints/{BEST} under {exp_dir}. "
            f"Run that stage first: make train EXP={experiment}"
        )
    path = Path(spec)
    if not path.is_file():
        raise C.ConfigError(f"system.init_from={spec}: no such checkpoint file")
    return path


def load_initial_weights(system: DenoiseSystem, checkpoint: Path) -> None:
    """Weights only: optimizer, schedule and epoch counter start fresh (a new stage, not a resume)."""
    try:
        ckpt = read_checkpoint(checkpoint)
        system.load_state_dict(ckpt["state_dict"], strict=True)
    except CheckpointError as exc:
        raise C.ConfigError(f"system.init_from: {exc}") from None
    except RuntimeError as exc:
        raise C.ConfigError(
            f"system.init_from: {checkpoint} does not fit this experiment's model "
            f"({describe_mismatch(exc)}). It was trained with different model.* settings: "
            f"re-run that stage with the same model config."
        ) from None
    log.info("initialised weights from %s", checkpoint)


# ----------------------------------------------------------------------------- builders
class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger with its ``epoch`` scalar counted from 1, as the epoch line, the
    progress bar and the spectrogram titles count (Lightning logs its 0-based ``current_epoch``)."""

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        super().log_metrics(metrics, step)


def build_system(cfg: DictConfig) -> DenoiseSystem:
    cls = system_class(cfg.system.kind)
    return cls(**cls.arguments_from_config(cfg))


def required_paths(cfg: DictConfig) -> list[str]:
    """The ``???`` keys this data setup reads."""
    d = cfg.data
    keys = {
        "paired": [f"data.paired.{k}" for k in ("train_noisy", "train_clean", "val_noisy", "val_clean")],
        "real_pairs": ["data.real_pairs.a", "data.real_pairs.b"],
    }.get(d.mode, [])
    if d.mode != "paired":
        keys += [
            f"data.clean.{c}.folder.path"
            for c, w in d.clean.mix.items()
            if w > 0 and d.clean[c].kind == "folder"
        ]
        keys += ["data.noise.folder.path"] if d.noise.kind == "folder" else []
    return keys


def check_data_config(cfg: DictConfig) -> None:
    """The paths this data setup reads are given (combinations of keys are checked at composition)."""
    missing = [
        k
        for k in required_paths(cfg)
        if OmegaConf.is_missing(OmegaConf.select(cfg, k.rsplit(".", 1)[0]), k.rsplit(".", 1)[1])
    ]
    if missing:
        example = " ".join(f"{k}=/path/to/..." for k in missing)
        raise C.ConfigError(f'data.mode={cfg.data.mode} needs {", ".join(missing)}; e.g. ARGS="{example}"')
    if cfg.data.mode in ("supervised", "noise2noise"):
        for name in corpus_contents(C.to_container(cfg.data.clean)):
            try:
                read_manifest(cfg.data.clean[name].corpus)
            except CorpusError as exc:
                raise C.ConfigError(f"data.clean.{name}: {exc}") from None


def build_datamodule(cfg: DictConfig, system: DenoiseSystem) -> DenoiseDataModule:
    check_data_config(cfg)
    d = cfg.data
    sr = d.sample_rate
    valid = system.net.valid_length
    return DenoiseDataModule(
        sample_rate=sr,
        mode=d.mode,
        segment_samples=valid(round(d.segment_seconds * sr)),
        val_samples=valid(round(d.val_segment_seconds * sr)),
        snr_db=list(d.snr_db),
        gain_db=list(d.gain_db),
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        train_examples_per_epoch=d.train_examples_per_epoch,
        val_clips=d.val_clips,
        seed=cfg.seed,
        clean=C.to_container(d.clean),
        noise=C.to_container(d.noise),
        paired=C.to_container(d.paired),
        real_pairs=C.to_container(d.real_pairs),
        cache_dir=d.cache_dir,
        source_bank=d.source_bank,
    )


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[L.Callback]:
    m = cfg.metrics
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    return [
        WaveformQuality(
            silent_clean_rms=m.silent_clean_rms, contents=contents, sample_rate=cfg.data.sample_rate
        ),
        PerceptualQuality(
            cfg.data.sample_rate,
            every_n_epochs=m.perceptual_every_n_epochs,
            clips=m.perceptual_clips,
            workers=m.perceptual_workers,
            contents=contents,
            visqol_clips=m.visqol_clips,
        ),
        # after WaveformQuality: it reads its result
        OverSuppressionAlarm(threshold=m.retention_alarm, contents=contents),
        AudioExamples(cfg.data.sample_rate, every_n_epochs=cfg.media.every_n_epochs, clips=cfg.media.clips),
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename=Path(BEST).stem,
            monitor=cfg.checkpoint.monitor,
            mode=cfg.checkpoint.mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        # last.ckpt after every epoch, on its own: Lightning's save_last writes it only when the best one
        # improved, so an epoch without a new best would be lost to a resume (a preempted job redid it).
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename=Path(LAST).stem,
            monitor=None,
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        LearningRateMonitor(logging_interval="step"),
        RNGState(),
    ]


def display_callbacks(cfg: DictConfig, quiet: bool = False) -> list[L.Callback]:
    """What the terminal and TensorBoard's Text tab show besides the metrics: the epoch line, the progress
    bar and the model summary in our words (epochs counted from 1, no ``v_num``, no FLOPs that were never
    counted), the exact final values. ``quiet``: the final values only (``train`` prints one line)."""
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    if quiet:
        return [ResultsText(contents)]
    bar = [EpochProgressBar()] if cfg.trainer.enable_progress_bar else []
    return [EpochSummary(contents=contents), ResultsText(contents), *bar, LayerSummary()]


def build_trainer(
    cfg: DictConfig, run_dir: Path, logger: TensorBoardLogger, callbacks: list, quiet: bool = False
) -> L.Trainer:
    # Our epoch metrics are torchmetrics states already reduced across ranks; Lightning cannot tell.
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
    plugins = []
    if SLURMEnvironment.detect():
        # Preemption is handled by the job script (requeue, then resume from last.ckpt), not by
        # saving inside Lightning's signal handler, which has been seen to hang.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    settings = C.to_container(cfg.trainer)
    if quiet:
        settings.update(enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(
        **settings,
        default_root_dir=run_dir,
        logger=logger,
        callbacks=callbacks,
        plugins=plugins,
        use_distributed_sampler=False,
    )  # our samplers shard by rank themselves


def finished_result(run_dir: Path, checkpoint: Path, cfg: DictConfig, quiet: bool = False) -> dict | None:
    """The saved result of a run whose checkpoint already holds every epoch, else None.

    Resuming such a run (a scheduler requeue after the end, or RESUME=1 twice) must change nothing:
    Lightning would stop at once and the run's config, events and metrics.json be rewritten with less.
    """
    results = run_dir / "metrics.json"
    if not results.is_file():
        return None
    epoch = int(check_resumable(checkpoint)["epoch"])
    if epoch + 1 < cfg.trainer.max_epochs:
        return None
    if not quiet:  # quiet: train() says it in its one line
        print(
            f"{run_dir} already finished ({epoch + 1} of {cfg.trainer.max_epochs} epochs): nothing to do; "
            f"its results are in {results}"
        )
    return json.loads(results.read_text())


def final_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(("val/", "val_status/")) and torch.is_tensor(v) and v.numel() == 1
    }


# ----------------------------------------------------------------------------- main
def train(
    cfg: DictConfig,
    resume: str | None = None,
    ckpt_path: Path | None = None,
    extra_callbacks: list[L.Callback] = (),
    quiet: bool = False,
) -> dict:
    """Fit one experiment; returns {'run_dir', 'best', 'last', 'metrics'}.

    ``quiet=True`` (notebooks): no progress bar, model summary, epoch lines, Lightning information lines or
    warnings; one line at the end says what the run reached (and how many warnings were held back). The
    run's files are the same.
    """
    quiet_third_party()
    with quiet_output(quiet) as held:
        result = _train(cfg, resume, ckpt_path, extra_callbacks, quiet)
    if quiet and rank_zero_only.rank == 0:
        print(quiet_line(result, cfg, len(held)), flush=True)
    return result


def _train(
    cfg: DictConfig,
    resume: str | None,
    ckpt_path: Path | None,
    extra_callbacks: list[L.Callback],
    quiet: bool,
) -> dict:
    C.check_folder(cfg.run.root, "run.root")  # before anything is made there
    if cfg.data.cache_dir:
        C.check_folder(cfg.data.cache_dir, "data.cache_dir")
    if resume:
        run_dir, ckpt_path = resolve_resume(resume, cfg)
        finished = finished_result(run_dir, ckpt_path, cfg, quiet)
        if finished is not None:
            return finished
    else:
        exp_dir = experiment_dir(cfg)
        run_dir = exp_dir / (cfg.run.version or next_version(exp_dir))
        if (run_dir / "checkpoints" / LAST).exists():
            raise C.ConfigError(
                f"{run_dir} already holds a run; resume it with RESUME=1 or pick a new run.version"
            )
    cfg.run.version = run_dir.name

    L.seed_everything(cfg.seed, workers=True)
    system = build_system(cfg)
    if cfg.system.init_from and ckpt_path is None:  # a resumed run already has its own weights
        load_initial_weights(system, resolve_init_from(cfg.system.init_from, cfg.run.root))
    datamodule = build_datamodule(cfg, system)
    # A resumed run redoes the steps after its checkpoint: TensorBoard hides what the earlier event files hold
    # from that step on, so each step shows once.
    resumed_at = {"purge_step": int(check_resumable(ckpt_path)["global_step"])} if ckpt_path else {}
    logger = RunLogger(
        save_dir=str(run_dir.parent.parent),
        name=run_dir.parent.name,
        version=run_dir.name,
        default_hp_metric=False,
        **resumed_at,
    )
    callbacks = build_callbacks(cfg, run_dir) + display_callbacks(cfg, quiet) + list(extra_callbacks)
    trainer = build_trainer(cfg, run_dir, logger, callbacks, quiet)
    if trainer.is_global_zero:
        C.save(cfg, run_dir / "config.yaml")
        # HParams and the custom-scalars layout: what TensorBoard shows first (a resumed run has them already)
        if ckpt_path is None:
            dashboard.write(logger.experiment, cfg)
    try:
        trainer.fit(system, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SIGTERMException:
        raise TrainingInterrupted(run_dir, cfg.experiment) from None
    if _distributed():
        # Whoever called train() (main, a test worker, a notebook): gloo's threads must be stopped before the
        # interpreter's teardown, or the process aborts at exit ('terminate called without an active
        # exception').
        atexit.register(_destroy_process_group)
    # Global rank 0's run directory is the run's, on every rank and node. A fresh run's other ranks chose
    # theirs before the processes could talk and may have seen rank 0's new version_N (they named N+1);
    # they wrote nothing there: only rank 0 writes, and ModelCheckpoint takes rank 0's dirpath at setup.
    run_dir = Path(trainer.strategy.broadcast(str(run_dir)))

    ckpt_dir = run_dir / "checkpoints"
    result = {
        "run_dir": str(run_dir),
        "best": str(ckpt_dir / BEST),
        "last": str(ckpt_dir / LAST),
        "metrics": final_metrics(trainer),
    }
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(result, indent=2, sort_keys=True))
        if not quiet:
            print_summary(result, cfg)
    return result


def print_summary(result: dict, cfg: DictConfig) -> None:
    """The end of a run: the exact final values (TensorBoard's curves are smoothed), where the best
    checkpoint is and how to open TensorBoard on unsmoothed curves."""
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    print(f"\n{cfg.experiment} finished: {result['run_dir']}")
    for line in final_lines(result["metrics"], contents):
        print(f"  {line}")
    print(f"  best checkpoint: {result['best']}")
    print(f"  TensorBoard: {tensorboard_hint(Path(cfg.run.root))}")
    for line in smoothing_note():
        print(f"    {line}")


def quiet_line(result: dict, cfg: DictConfig, held_warnings: int = 0) -> str:
    """``train(..., quiet=True)``'s one line: which run, what it reached, where it is."""
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    held = (
        f" ({held_warnings} warning{'s' * (held_warnings != 1)} held back: quiet=True)"
        if held_warnings
        else ""
    )
    return (
        f"{cfg.experiment} {Path(result['run_dir']).name}: {result_line(result['metrics'], contents)} "
        f"· {result['run_dir']}{held}"
    )


def check_schedule_unchanged(saved: DictConfig, new: DictConfig) -> None:
    """A one-cycle schedule's length is fixed when a run starts; resuming cannot stretch it."""
    keys = ("trainer.max_epochs", "data.train_examples_per_epoch", "data.batch_size")
    changed = [k for k in keys if C.OmegaConf.select(saved, k) != C.OmegaConf.select(new, k)]
    if changed and saved.optim.scheduler == "onecycle":
        raise C.ConfigError(
            f"cannot resume with a different {', '.join(changed)}: this run's one-cycle learning-rate "
            "schedule was sized at its start. Resume unchanged, or start a new run from its weights "
            "with system.init_from=<its last.ckpt> (or use optim.scheduler=cosine|constant)."
        )


def run_stages(parent: DictConfig, overrides: list[str], blocks: list[str], resume: bool) -> list[dict]:
    """Train each stage of a sequence experiment in order (e.g. progressive, leakage_ablation).

    A named stage runs under runs/<parent>/<name>/. With resume, finished stages (metrics.json
    written) are skipped and an interrupted one continues from its last.ckpt.
    """
    results = []
    try:
        _train_stages(parent, overrides, blocks, resume, results)
    except TrainingInterrupted as stop:  # the sequence continues as a whole, finished stages kept
        stop.experiment, stop.resume_args = parent.experiment, "--resume"
        raise
    print_stage_table(results)
    return results


def _train_stages(
    parent: DictConfig, overrides: list[str], blocks: list[str], resume: bool, results: list
) -> None:
    for stage in parent.stages:
        stage_overrides = [*stage.get("overrides", []), *overrides]  # the command line has the last word
        cfg = C.compose(stage.experiment, stage_overrides, blocks=blocks)
        if stage.get("name"):
            cfg.experiment = f"{parent.experiment}/{stage.name}"
        latest = latest_resumable(experiment_dir(cfg))
        if resume and latest is not None and (latest / "metrics.json").is_file():
            log.info("stage %s already finished in %s; skipping", cfg.experiment, latest)
            results.append({"stage": cfg.experiment, **json.loads((latest / "metrics.json").read_text())})
            continue
        if resume and latest is not None:
            cfg = C.compose_saved(latest / "config.yaml", stage_overrides, blocks=blocks)
            results.append({"stage": cfg.experiment, **train(cfg, resume=str(latest))})
        else:
            results.append({"stage": cfg.experiment, **train(cfg)})


def resolve_experiment(
    experiment: str,
    overrides: list[str],
    blocks: list[str],
    resume: bool = False,
    resume_from: str | None = None,
    resume_if_exists: bool = False,
) -> tuple[DictConfig, str | None]:
    """(config, what to resume) for a command line: with a resume, the saved run's config plus the
    overrides."""
    cfg = C.compose(experiment, overrides, blocks=blocks)
    target = resume_from or ("latest" if resume else None)
    if resume_if_exists:
        if not cfg.run.version:
            raise C.ConfigError("--resume-if-exists needs a fixed run.version=version_N")
        run_dir = experiment_dir(cfg) / cfg.run.version
        if (run_dir / "checkpoints" / LAST).is_file():
            log.info("resuming %s from its %s", run_dir, LAST)
            target = str(run_dir)
    if cfg.stages and resume_from:
        raise C.ConfigError(
            f"{experiment} is a sequence of stages: --resume continues it (finished stages "
            f"are kept); --resume-from names one stage's run, e.g. runs/{experiment}/<stage>/version_N"
        )
    if target and not cfg.stages:
        run_dir, _ = resolve_resume(target, cfg)
        cfg = C.compose_saved(run_dir / "config.yaml", overrides, blocks=blocks)
        check_schedule_unchanged(C.compose_saved(run_dir / "config.yaml"), cfg)
    return cfg, target


def run_experiment(
    cfg: DictConfig, overrides: list[str], blocks: list[str], resume: str | None
) -> list[dict]:
    """Train one run, or each stage of a sequence experiment; the results of each."""
    if cfg.stages:
        return run_stages(cfg, overrides, blocks, resume=bool(resume))
    return [train(cfg, resume=resume)]


def print_stage_table(results: list[dict]) -> None:
    keys = (
        "val/si_sdr_i",
        "val/pesq",
        "val/stoi",
        "val/amplitude_retention",
        "val/leakage",
        "val/residual_noise",
    )
    header = ["stage", *(k.split("/", 1)[1] for k in keys), "run"]
    print(
        "\n"
        + "\n".join(
            tables.markdown(
                header, [[r["stage"], *(r["metrics"].get(k) for k in keys), r["run_dir"]] for r in results]
            )
        )
    )


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _destroy_process_group() -> None:
    if _distributed():  # registered once per train() call: a sequence of stages closes it at the first
        torch.distributed.destroy_process_group()


def close_process_group() -> None:
    """Leave a multi-process run together: every rank waits for the others, then closes its connections.

    Lightning leaves the process group open. A rank that exits while a peer is still finishing tears the
    peer's connections down under it (gloo aborts that peer with 'terminate called without an active
    exception'), and the launcher reports a finished run as failed.
    """
    if _distributed():
        torch.distributed.barrier()
        _destroy_process_group()
