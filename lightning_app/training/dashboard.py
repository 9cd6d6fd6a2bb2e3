"""What TensorBoard shows first: the settings that tell runs apart, the metrics that matter, quality first.

- HParams: five short columns first (experiment, variant, loss, budget, data), then the settings of every
  network and every system, the keys ``ALWAYS`` names and every key a shipped experiment, building block or
  sweep sets — not the hundred defaults no file changes. TensorBoard takes the list of columns and metrics
  of a whole folder from ONE run's experiment summary (the first it reads: ``backend_context.
  _find_experiment_tag``), so every run declares the same union: a folder that mixes supervised and
  Noise2Noise runs offers both variants' columns. A run leaves the keys it does not use (the other
  network's, the other system's loss weights) empty: TensorBoard shows missing values as blank and its
  filters take them, where a text placeholder in a numeric column would break its interval filter. A key
  changed only on one run's command line is a column only when that run's summary is the one read. The
  declared metrics are the ones a run is judged by, with short names and units; TensorBoard shows each one's
  last logged value, unsmoothed, at five significant digits (its fixed format).
- Custom scalars: one chart of the denoised output vs the noisy input SI-SDR, then the other quality curves,
  the Noise2Noise diagnostics, each loss term's train and validation curves on one chart, and the bookkeeping
  last. A chart has no legend of its own (the layout proto holds only tag regexes): the "Matches" list under
  it and the tooltip name each series by its tag, so the output-vs-input charts draw
  ``val_compare/<metric>_denoised`` and ``val_compare/<metric>_noisy_input`` (the quality callbacks log
  them next to ``val/<metric>`` and ``val/<metric>_input``).
- Smoothing: TensorBoard's default of 0.6 is set in its front end, not read from the event files; only the
  address can override it (``?smoothing=0`` for Time Series, ``&_smoothingWeight=0`` for Scalars and Custom
  Scalars): ``console.unsmoothed_urls`` gives them, and the end of a run prints them with the exact final
  values, which also go to the Text tab (``results``).
"""

from __future__ import annotations

import functools

from omegaconf import DictConfig, OmegaConf

from lightning_app import config as C
from lightning_app.metrics.quality import (
    RETENTION_LOUD,
    RETENTION_TARGET,
    SPEECH_REMOVED_LABEL,
    WORSE_THAN_INPUT_DB,
    metric_contents,
)
from lightning_app.training.callbacks.quality import compare_tags

#: config keys shown for every run, changed or not: what a reader needs to tell two runs apart
ALWAYS = (
    "experiment",
    "system.kind",
    "data.mode",
    "model.kind",
    "data.sample_rate",
    "data.snr_db",
    "data.batch_size",
    "data.train_examples_per_epoch",
    "trainer.max_epochs",
    "optim.lr",
    "optim.scheduler",
    "seed",
)
#: never shown: where things are written, how the terminal looks and how many processes do the work say
#: nothing about the model
NEVER = (
    "run.",
    "data.cache_dir",
    "data.num_workers",
    "metrics.perceptual_workers",
    "media.",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "use",
    "stages",
)

_SYSTEMS = {"supervised": "sup.", "noise2noise": "N2N"}
_NETWORKS = {"spectral_unet": "spectral U-Net", "wave_unet": "wave U-Net", "cross_domain": "cross-domain"}
_MODES = {"paired": "paired files", "real_pairs": "real pairs"}


def loss_group(cfg: DictConfig) -> str:
    """The config group holding the loss weights the system reads."""
    return f"system.{cfg.system.kind}"


def _network_keys(cfg: DictConfig) -> set[str]:
    return {f"model.{cfg.model.kind}.{k}" for k in cfg.model[cfg.model.kind]}


def _number(value: float) -> str:
    return f"{value:g}"


def _never(key: str) -> bool:
    return any(key == n or key.startswith(n) for n in NEVER)


def summary(cfg: DictConfig) -> dict[str, str]:
    """Five short columns, capitalised: TensorBoard sorts hyper-parameters by name (capitals before the
    lower-case config keys) and shows the first five, each in a column about 16 characters wide, so each
    value opens on what tells runs apart (``3 ep × 64 ex, bs 16``); the learning rate, scheduler and the
    rest have columns of their own."""
    d = cfg.data
    weights = C.to_container(OmegaConf.select(cfg, loss_group(cfg)))
    terms = sorted(((w, name) for name, w in weights.items() if w), key=lambda t: -t[0])
    contents = sorted(((c, w) for c, w in d.clean.mix.items() if w > 0), key=lambda t: -t[1])
    if d.mode in _MODES:
        source = _MODES[d.mode]
    elif len(contents) == 1:
        source = contents[0][0]
    else:
        source = "+".join(f"{c} {_number(w)}" for c, w in contents)
    return {
        "Experiment": cfg.experiment,
        "Variant": f"{_SYSTEMS.get(cfg.system.kind, cfg.system.kind)} "
        f"{_NETWORKS.get(cfg.model.kind, cfg.model.kind)}",
        "Loss": " + ".join(f"{_number(w)}·{name}" for w, name in terms) or "none",
        "Budget": f"{cfg.trainer.max_epochs} ep × {d.train_examples_per_epoch} ex, bs {d.batch_size}",
        "Data": f"{d.sample_rate / 1000:g} kHz {source}, {_number(d.snr_db[0])} to {_number(d.snr_db[1])} dB",
    }


@functools.lru_cache(maxsize=1)
def written_keys() -> frozenset[str]:
    """The config keys a shipped experiment, building block (configs/<group>/) or sweep sets: the settings
    runs in one folder are likely to differ in (paths and bookkeeping left out, see ``NEVER``)."""
    keys: set[str] = set()
    for path in [*sorted(C.EXPERIMENT_DIR.glob("*.yaml")), *sorted(C.CONFIG_DIR.glob("*/*.yaml"))]:
        raw = OmegaConf.to_container(OmegaConf.load(path)) or {}
        if path.parent.name == "sweep":
            keys |= set(raw.get("params") or {})
            keys |= {o.split("=", 1)[0] for o in raw.get("overrides") or []}
            continue
        for stage in raw.get("stages") or []:
            keys |= {o.split("=", 1)[0] for o in stage.get("overrides") or []}
        keys |= set(C.flatten({k: v for k, v in raw.items() if k not in ("stages", "use", "experiment")}))
    defaults = C.flatten(C.to_container(C.load_defaults()))
    return frozenset(k for k in keys if k in defaults and not _never(k))


def _variant_keys(flat: dict) -> set[str]:
    """Every network's settings and every system's loss weights (each run uses one of each)."""
    return {
        k
        for k in flat
        if k.startswith("model.") and k != "model.kind" or k.split(".")[0] == "system" and k.count(".") == 2
    }


def hparams(cfg: DictConfig) -> dict[str, object]:
    """{name: scalar} for the HParams view: the summary columns, then the network's and the loss's settings,
    the keys in ``ALWAYS``, the keys of ``written_keys`` and every key changed from the defaults (lists as
    text, unset values left out). The other network's and the other system's keys are left out: this run
    does not read them."""
    flat = C.flatten(C.to_container(cfg))
    defaults = C.flatten(C.to_container(C.load_defaults()))
    network, losses, written = _network_keys(cfg), loss_group(cfg) + ".", written_keys()
    shown: dict[str, object] = dict(summary(cfg))
    for key, value in flat.items():
        if value == "???" or _never(key):
            continue
        if key in ALWAYS or key in network or key.startswith(losses):
            shown[key] = value
        elif key.startswith("model.") or any(
            key.startswith(f"system.{k}.") for k in C.CHOICES["system.kind"]
        ):
            continue  # read only by the other network or the other system
        elif key in written or defaults.get(key, object()) != value:
            shown[key] = value
    shown["use"] = ", ".join(cfg.use) if cfg.use else "none"
    return {k: "null" if v is None else v for k, v in shown.items()}


def columns(cfg: DictConfig) -> dict[str, object]:
    """{name: value} of every column this run declares, the same for every run of this code base: its own
    ``hparams`` and every variant's keys (with the default value, which gives the column its type). A
    folder's HParams view takes its columns from one run's declaration, whichever run TensorBoard reads
    first."""
    flat = {k: v for k, v in C.flatten(C.to_container(C.load_defaults())).items() if v != "???"}
    union = {k: flat[k] for k in sorted(_variant_keys(flat) | set(ALWAYS) | written_keys()) if k in flat}
    union.update(hparams(cfg))
    return {k: "null" if v is None else v for k, v in union.items()}


def has_speech(cfg: DictConfig) -> bool:
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    return not contents or "speech" in contents  # unlabelled data may be speech: PESQ/STOI are attempted


def declared_metrics(cfg: DictConfig) -> list[str]:
    """The metrics this run logs and is judged by."""
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    tags = [
        "val/si_sdr_i",
        "val/si_sdr",
        *[f"val/si_sdr_i/{c}" for c in contents],
        "val/amplitude_retention",
        *[f"val/amplitude_retention/{c}" for c in contents],
        "val/worse_than_input",
        *[f"val/worse_than_input/{c}" for c in contents],
    ]
    if has_speech(cfg):
        tags += ["val/pesq", "val/pesq_i", "val/stoi", "val/stoi_i"]
    if cfg.metrics.visqol_clips > 0:
        tags += ["val/visqol", "val/visqol_i", *[f"val/visqol/{c}" for c in contents]]
    if cfg.system.kind == "noise2noise":
        tags += ["val/leakage", "val/residual_noise"]
    return tags + ["val/loss", "val_status/muting_alarm"]


#: the HParams view's metric columns, in order (it shows the first five): short names (a column is about
#: 16 characters wide) with units
METRIC_NAMES = {
    "val/si_sdr_i": "SI-SDR gain dB",
    "val/si_sdr": "SI-SDR dB",
    "val_status/si_sdr_best": "best SI-SDR dB",
    "val/amplitude_retention": "retention",
    "val/pesq": "PESQ",
    "val/pesq_i": "PESQ gain",
    "val/stoi": "STOI",
    "val/stoi_i": "STOI gain",
    "val/visqol": "ViSQOL",
    "val/visqol_i": "ViSQOL gain",
    "val/leakage": "leakage (N2N)",
    "val/residual_noise": "residual (N2N)",
    "val/speech_removed": SPEECH_REMOVED_LABEL,
    "val/lsd": "LSD dB",
    "val/worse_than_input": "worse than input",
    "val/loss": "val loss",
    "val_status/muting_alarm": "muting alarm",
}
_PER_CONTENT = {
    "val/si_sdr_i": "gain dB",
    "val/amplitude_retention": "retention",
    "val/visqol": "ViSQOL",
    "val/worse_than_input": "worse",
}


def experiment_metrics(cfg: DictConfig) -> dict[str, str]:
    """{tag: column name} of every metric any run may log, the same for every run (a folder's view takes
    one run's list): ``METRIC_NAMES``, then each content's gain, retention, ViSQOL and share of clips worse
    than the input, for the contents of ``data.clean.mix`` and this run's."""
    contents = list(C.load_defaults().data.clean.mix)
    contents += [c for c in metric_contents(cfg.data.mode, cfg.data.clean.mix) if c not in contents]
    metrics = dict(METRIC_NAMES)
    for tag, name in _PER_CONTENT.items():
        metrics.update({f"{tag}/{c}": f"{c.replace('_', ' ')} {name}" for c in contents})
    metrics.update({t: t for t in declared_metrics(cfg) if t not in metrics})
    return metrics


def loss_terms(cfg: DictConfig) -> list[str]:
    weights = C.to_container(OmegaConf.select(cfg, loss_group(cfg)))
    return [name for name, weight in weights.items() if weight]


def _lines(*names: str) -> list:
    return ["Multiline", [f"^{n}$" for n in names]]


def _compared(metric: str) -> list:
    """The denoised and the noisy-input curves of one metric, under tags that say which is which."""
    return _lines(*compare_tags("val", metric))


def layout(cfg: DictConfig) -> dict:
    """TensorBoard's custom-scalars layout: {category: {chart title: ["Multiline", [tag regexes]]}}."""
    quality = {
        "SI-SDR (dB): denoised vs noisy input": _compared("si_sdr"),
        "SI-SDR gain over the input (dB), overall and per content": [
            "Multiline",
            [r"^val/si_sdr_i(/[^/]+)?$"],
        ],
        "Amplitude retention (RMS out / RMS clean; target {:g}-{:g}, muting alarm below {:g}, LOUDER above "
        "{:g})".format(*RETENTION_TARGET, cfg.metrics.retention_alarm, RETENTION_LOUD): [
            "Multiline",
            [r"^val/amplitude_retention(/[^/]+)?$"],
        ],
        f"Share of clips worse than the input (SI-SDR more than {WORSE_THAN_INPUT_DB:g} dB below it), "
        "overall and per content": ["Multiline", [r"^val/worse_than_input(/[^/]+)?$"]],
    }
    if has_speech(cfg):
        quality["PESQ (speech clips): denoised vs noisy input"] = _compared("pesq")
        quality["STOI (speech clips): denoised vs noisy input"] = _compared("stoi")
    if cfg.metrics.visqol_clips > 0:
        quality["ViSQOL (level-blind: read it with retention): denoised vs noisy input"] = _compared("visqol")
    quality["Log-spectral distance (dB, lower is better): denoised vs noisy input"] = _compared("lsd")
    quality[
        f"{SPEECH_REMOVED_LABEL}: |correlation| of what was removed with the clean signal (0 = only noise "
        "removed; not a share of the signal)"
    ] = _lines("val/speech_removed")
    categories = {"Quality (what a listener hears)": quality}
    if cfg.system.kind == "noise2noise":
        categories["Noise2Noise: leakage and residual noise"] = {
            "Leakage (target copy's noise in the cross output; near 0 is right)": _lines(
                "val/leakage", "val/leakage_a", "val/leakage_b"
            ),
            "Residual noise (source copy's noise left in the output)": _lines("val/residual_noise"),
            "Cross path SI-SDR gain (dB)": _lines("val/cross_si_sdr_i"),
        }
    losses = {"total: train vs validation": _lines("train/loss", "val/loss")}
    losses.update(
        {
            f"{term}: train vs validation": _lines(f"train/loss_{term}", f"val/loss_{term}")
            for term in loss_terms(cfg)
        }
    )
    categories["Losses (epoch means)"] = losses
    categories["Status"] = {
        "Muting alarm (1 = retention below the threshold)": [
            "Multiline",
            [r"^val_status/muting_alarm(/[^/]+)?$"],
        ],
        "Clips scored": ["Multiline", [r"^val_status/(clips|silent_clips|speech_clips|visqol_clips)$"]],
        "Perceptual metric failures": ["Multiline", [r"^val_status/\w+_failures$"]],
        "Learning rate": ["Multiline", [r"^lr-"]],
    }
    return categories


def experiment_summary(cfg: DictConfig):
    """The ``_hparams_/experiment`` summary: every column of ``columns`` and metric of
    ``experiment_metrics``, with their column names."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    def data_type(value) -> int:
        if isinstance(value, str):
            return api_pb2.DATA_TYPE_STRING
        return api_pb2.DATA_TYPE_FLOAT64  # numbers and booleans: torch's hparams() logs both as numbers

    experiment = api_pb2.Experiment(
        hparam_infos=[api_pb2.HParamInfo(name=k, type=data_type(v)) for k, v in columns(cfg).items()],
        metric_infos=[
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=name, description=tag)
            for tag, name in experiment_metrics(cfg).items()
        ],
    )
    content = metadata.create_summary_metadata(HParamsPluginData(experiment=experiment))
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=content)])


def write(writer, cfg: DictConfig) -> None:
    """HParams (settings and declared metrics) and the custom-scalars layout into a run's events."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    file_writer = writer._get_file_writer()
    _, start, end = hparams_summary(hparams(cfg), {t: 0.0 for t in declared_metrics(cfg)})
    for summary_pb in (experiment_summary(cfg), start, end):
        file_writer.add_summary(summary_pb)
    writer.add_custom_scalars(layout(cfg))
