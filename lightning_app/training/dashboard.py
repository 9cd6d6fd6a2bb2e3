"""What TensorBoard shows first: the settings that tell runs apart, the metrics that matter, quality first.

- HParams: five readable columns first (experiment, variant, loss, budget, data), then the network's and
  the loss's settings and every key the experiment, its blocks, a sweep or the command line changed from
  configs/defaults.yaml — not the hundred defaults every run shares. The metrics declared next to them are
  the ones a run is judged by (SI-SDR gain overall and per content, retention, PESQ/STOI when there is
  speech, ViSQOL when it runs, leakage for Noise2Noise); TensorBoard shows each one's latest logged value.
- Custom scalars: one chart of output vs input SI-SDR, then the other quality curves, the Noise2Noise
  diagnostics, each loss term's train and validation curves on one chart, and the bookkeeping last.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from lightning_app import config as C
from lightning_app.metrics.quality import metric_contents

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
#: never shown: where things are written and how the terminal looks say nothing about the model
NEVER = (
    "run.",
    "data.cache_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "use",
    "stages",
)


def loss_group(cfg: DictConfig) -> str:
    """The config group holding the loss weights the system reads."""
    return f"system.{cfg.system.kind}"


def _network_keys(cfg: DictConfig) -> set[str]:
    return {f"model.{cfg.model.kind}.{k}" for k in cfg.model[cfg.model.kind]}


def _number(value: float) -> str:
    return f"{value:g}"


def summary(cfg: DictConfig) -> dict[str, str]:
    """Five readable columns, capitalised: TensorBoard sorts hyper-parameters by name (capitals before the
    lower-case config keys) and shows the first five, so these are what a table of runs opens on."""
    d = cfg.data
    mix = ", ".join(f"{c} {_number(w)}" for c, w in d.clean.mix.items() if w > 0)
    weights = C.to_container(OmegaConf.select(cfg, loss_group(cfg)))
    return {
        "Experiment": cfg.experiment,
        "Variant": f"{cfg.system.kind}: {cfg.model.kind} on {d.mode} data",
        "Loss": " + ".join(f"{_number(w)}·{name}" for name, w in weights.items() if w) or "none",
        "Budget": (
            f"{cfg.trainer.max_epochs} epochs x {d.train_examples_per_epoch} examples, batch {d.batch_size}, "
            f"lr {_number(cfg.optim.lr)} {cfg.optim.scheduler}"
        ),
        "Data": (
            f"{d.sample_rate / 1000:g} kHz, {mix if d.mode in ('supervised', 'noise2noise') else d.mode}, "
            f"SNR {_number(d.snr_db[0])} to {_number(d.snr_db[1])} dB"
        ),
    }


def hparams(cfg: DictConfig) -> dict[str, object]:
    """{name: scalar} for the HParams view: the summary columns, then the network's and the loss's settings,
    the keys in ``ALWAYS`` and every key changed from the defaults (lists as text, unset values left out)."""
    flat = C.flatten(C.to_container(cfg))
    defaults = C.flatten(C.to_container(C.load_defaults()))
    network, losses = _network_keys(cfg), loss_group(cfg) + "."
    shown: dict[str, object] = dict(summary(cfg))
    for key, value in flat.items():
        if value == "???" or any(key == n or key.startswith(n) for n in NEVER):
            continue
        if key in ALWAYS or key in network or key.startswith(losses):
            shown[key] = value
        elif key.startswith("model.") or any(
            key.startswith(f"system.{k}.") for k in C.CHOICES["system.kind"]
        ):
            continue  # read only by the other network or the other system
        elif defaults.get(key, object()) != value:
            shown[key] = value
    shown["use"] = ", ".join(cfg.use) if cfg.use else "none"
    return {k: "null" if v is None else v for k, v in shown.items()}


def has_speech(cfg: DictConfig) -> bool:
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    return not contents or "speech" in contents  # unlabelled data may be speech: PESQ/STOI are attempted


def declared_metrics(cfg: DictConfig) -> list[str]:
    contents = metric_contents(cfg.data.mode, cfg.data.clean.mix)
    tags = [
        "val/si_sdr_i",
        "val/si_sdr",
        *[f"val/si_sdr_i/{c}" for c in contents],
        "val/amplitude_retention",
        *[f"val/amplitude_retention/{c}" for c in contents],
    ]
    if has_speech(cfg):
        tags += ["val/pesq", "val/pesq_i", "val/stoi", "val/stoi_i"]
    if cfg.metrics.visqol_clips > 0:
        tags += ["val/visqol", "val/visqol_i", *[f"val/visqol/{c}" for c in contents]]
    if cfg.system.kind == "noise2noise":
        tags += ["val/leakage", "val/residual_noise"]
    return tags + ["val/loss", "val_status/muting_alarm"]


def loss_terms(cfg: DictConfig) -> list[str]:
    weights = C.to_container(OmegaConf.select(cfg, loss_group(cfg)))
    return [name for name, weight in weights.items() if weight]


def _lines(*names: str) -> list:
    return ["Multiline", [f"^{n}$" for n in names]]


def layout(cfg: DictConfig) -> dict:
    """TensorBoard's custom-scalars layout: {category: {chart title: ["Multiline", [tag regexes]]}}."""
    quality = {
        "SI-SDR (dB): denoised vs noisy input": _lines("val/si_sdr", "val/si_sdr_input"),
        "SI-SDR gain over the input (dB), overall and per content": [
            "Multiline",
            [r"^val/si_sdr_i(/[^/]+)?$"],
        ],
        "Amplitude retention (RMS out / RMS clean; the alarm is below 0.5)": [
            "Multiline",
            [r"^val/amplitude_retention(/[^/]+)?$"],
        ],
    }
    if has_speech(cfg):
        quality["PESQ (speech clips): denoised vs input"] = _lines("val/pesq", "val/pesq_input")
        quality["STOI (speech clips): denoised vs input"] = _lines("val/stoi", "val/stoi_input")
    if cfg.metrics.visqol_clips > 0:
        quality["ViSQOL (level-blind: read it with retention): denoised vs input"] = _lines(
            "val/visqol", "val/visqol_input"
        )
    quality["Log-spectral distance (dB, lower is better): denoised vs input"] = _lines(
        "val/lsd", "val/lsd_input"
    )
    quality["Speech removed (share of the removed signal that was speech)"] = _lines("val/speech_removed")
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


def write(writer, cfg: DictConfig) -> None:
    """HParams (settings and declared metrics) and the custom-scalars layout into a run's events."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    file_writer = writer._get_file_writer()
    for summary in hparams_summary(hparams(cfg), {t: 0.0 for t in declared_metrics(cfg)}):
        file_writer.add_summary(summary)
    writer.add_custom_scalars(layout(cfg))
