"""Reading finished runs back for analysis: TensorBoard scalars, images and audio, run tables, tiny runs.

The notebooks in notebooks/ are thin layers over these functions, so what they show is tested here.

    runs = find_runs("runs/supervised_unet", "runs/leakage_ablation/*")
    rows = runs_table(runs)                  # one row per run: final value of each metric
    curves = read_scalars(runs[0])           # {"val/si_sdr": (steps, values), ...}
"""

from __future__ import annotations

import functools
import glob
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from lightning_app import config as C
from lightning_app.evaluation import tables

# The metrics a listener cares about first (lesson 1), then the Noise2Noise diagnostics (lesson 2).
DEFAULT_TAGS = (
    "val/loss",
    "val/si_sdr",
    "val/si_sdr_i",
    "val/pesq",
    "val/stoi",
    "val/amplitude_retention",
    "val/speech_removed",
    "val_status/muting_alarm",
    "val/leakage",
)
SMOKE_BLOCKS = ("data/smoke", "model/tiny")


# ----------------------------------------------------------------------------- finding runs
def _has_events(folder: Path) -> bool:
    return any(folder.glob("events.out.tfevents.*"))


def find_runs(*patterns: str | os.PathLike) -> list[Path]:
    """Run directories (folders holding TensorBoard event files) at or under each path or glob pattern."""
    found: list[Path] = []
    for pattern in patterns:
        matches = [Path(m) for m in sorted(glob.glob(str(Path(pattern).expanduser())))]
        if not matches:
            raise FileNotFoundError(f"no such run directory: {pattern}")
        runs = [m for m in matches if m.is_dir() and _has_events(m)]
        runs += [
            p.parent
            for m in matches
            if m.is_dir() and not _has_events(m)
            for p in sorted(m.rglob("events.out.tfevents.*"))
        ]
        if not runs:
            raise FileNotFoundError(f"{pattern}: no TensorBoard event files in it (is it a run directory?)")
        found += [r for r in dict.fromkeys(runs) if r not in found]
    return found


def run_label(run_dir: Path) -> str:
    """<experiment>/<version> (<stage>/<version> for a stage of a sequence experiment)."""
    run_dir = Path(run_dir)
    return f"{run_dir.parent.name}/{run_dir.name}"


def run_config(run_dir: Path):
    """The config.yaml a run was trained with (None when the folder has none)."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    return OmegaConf.load(path) if path.is_file() else None


# ----------------------------------------------------------------------------- TensorBoard contents
def _accumulator(run_dir: Path):
    """The run's events, loaded once per state of its event files (a notebook reads each run several
    times)."""
    files = sorted(Path(run_dir).glob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event files in it")
    return _load_events(str(run_dir), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=8)
def _load_events(run_dir: str, files_state: tuple):  # files_state: the cache key; a growing run reloads
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(run_dir, size_guidance={"scalars": 0, "images": 0, "audio": 0})
    accumulator.Reload()
    return accumulator


def read_scalars(
    run_dir: Path, tags: Iterable[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{tag: (steps, values)} sorted by step; a step logged twice (a resumed run) keeps its last value."""
    accumulator = _accumulator(run_dir)
    available = accumulator.Tags()["scalars"]
    out = {}
    for tag in available if tags is None else [t for t in tags if t in available]:
        by_step = {e.step: e.value for e in accumulator.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out


def latest_images(run_dir: Path, prefix: str) -> dict[str, np.ndarray]:
    """{tag: RGB array} of the last logged image of every image tag starting with ``prefix``."""
    import matplotlib.image as mpimg

    accumulator = _accumulator(run_dir)
    return {
        tag: mpimg.imread(io.BytesIO(accumulator.Images(tag)[-1].encoded_image_string), format="png")
        for tag in accumulator.Tags()["images"]
        if tag.startswith(prefix)
    }


def latest_audio(run_dir: Path, prefix: str = "audio_") -> dict[str, tuple[bytes, int]]:
    """{tag: (WAV bytes, sample rate)} of the last logged clip of every audio tag starting with ``prefix``."""
    accumulator = _accumulator(run_dir)
    out = {}
    for tag in accumulator.Tags()["audio"]:
        if tag.startswith(prefix):
            event = accumulator.Audio(tag)[-1]
            out[tag] = (event.encoded_audio_string, int(event.sample_rate))
    return out


# ----------------------------------------------------------------------------- tables and plots
def runs_table(run_dirs: Sequence[Path], tags: Sequence[str] = DEFAULT_TAGS) -> list[dict]:
    """One row per run: its label, experiment, steps trained and each tag's final value (NaN if never
    logged)."""
    rows = []
    for run_dir in run_dirs:
        scalars = read_scalars(run_dir, tags)
        cfg = run_config(run_dir)
        row = {
            "run": run_label(run_dir),
            "experiment": cfg.experiment if cfg is not None else "?",
            "steps": int(max((s[-1] for s, _ in scalars.values()), default=0)),
        }
        for tag in tags:
            row[tag] = float(scalars[tag][1][-1]) if tag in scalars else float("nan")
        rows.append(row)
    return rows


def markdown(rows: list[dict], columns: Sequence[str], key: str = "run") -> str:
    """A markdown table of ``rows``, first column ``key``: the same format as the evaluation reports."""
    return "\n".join(tables.records(rows, list(columns), key))


def plot_curves(runs: dict[str, Path], tags: Sequence[str], columns: int = 3, separate: Sequence[str] = ()):
    """One panel per tag, one line per run (x: training step). Tags in ``separate`` get one panel per
    run instead (each on its own scale: losses of different definitions do not share one). Returns the
    figure."""
    import matplotlib.pyplot as plt

    curves = {label: read_scalars(path, tags) for label, path in runs.items()}
    panels = []  # (tag, the one run it shows or None for all)
    for tag in tags:
        logged = [label for label, scalars in curves.items() if tag in scalars]
        if logged:
            panels += [(tag, label) for label in logged] if tag in separate else [(tag, None)]
    if not panels:
        raise ValueError(f"none of {list(tags)} was logged by {list(runs)}")
    width = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        rows, width, figsize=(4.2 * width, 3.0 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for ax, (tag, only) in zip(axes.flat, panels, strict=False):
        for i, (label, scalars) in enumerate(curves.items()):
            if tag in scalars and only in (None, label):
                steps, values = scalars[tag]
                ax.plot(
                    steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label, color=f"C{i}"
                )
        ax.set_title(tag if only is None else f"{tag}: {only}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = {h.get_label(): h for ax in axes.flat for h in ax.get_lines()}
    # above the panels, inside the figure (the constrained layout makes room): a legend placed beyond the
    # figure's edge is cut off when the figure is saved, one inside a panel covers its curves
    fig.legend(
        list(handles.values()),
        list(handles),
        fontsize=7,
        loc="outside upper center",
        ncol=min(4, len(handles)),
    )
    return fig


# ----------------------------------------------------------------------------- tiny runs
def tiny_run(
    experiment: str,
    root: Path,
    name: str,
    overrides: Sequence[str] = (),
    blocks: Sequence[str] = SMOKE_BLOCKS,
) -> Path:
    """Train ``experiment`` with the smoke settings into root/<experiment>/<name>; reuse it when it finished.

    For notebooks given no run directories: seconds on a CPU, enough to exercise every plot, too short
    for conclusions (say so next to anything drawn from it)."""
    from lightning_app.training.run import train

    root = Path(root)
    cfg = C.compose(
        experiment,
        [f"run.root={root}", f"run.version={name}", f"data.cache_dir={root / '.cache'}", *overrides],
        blocks=list(blocks),
    )
    run_dir = root / experiment / name
    if (run_dir / "metrics.json").is_file():
        return run_dir
    return Path(train(cfg, quiet=True)["run_dir"])


def config_differences(run_dirs: Sequence[Path], ignore: tuple[str, ...] = ("run.", "data.cache_dir")) -> str:
    """A markdown table of the settings (config.yaml keys) in which the runs differ; '' when none do."""
    configs = {run_label(r): run_config(r) for r in run_dirs}
    flat = {label: C.flatten(C.to_container(cfg)) for label, cfg in configs.items() if cfg is not None}
    keys = sorted({k for values in flat.values() for k in values})
    differing = [
        k for k in keys if not k.startswith(ignore) and len({repr(v.get(k)) for v in flat.values()}) > 1
    ]
    if not differing:
        return ""
    return "\n".join(
        tables.markdown(
            ["setting", *flat], [[k, *(str(v.get(k, "–")) for v in flat.values())] for k in differing]
        )
    )


# ----------------------------------------------------------------------------- lesson 1 on real music
def real_music_lesson(
    corpus: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    clips: int = 3,
    seconds: float = 6.0,
    split: str = "val",
) -> dict:
    """The bundled model (or ``checkpoint``) fed *clean* real music of the corpus's ``split``, with and
    without the do-no-harm guard: per clip the SI-SDR of the output against its input (a restorer should
    stay above 25 dB), the amplitude retention and what was removed. {"rows", "audio": {clip: {track:
    wave}}, "rate"}."""
    import torch

    from lightning_app.data.corpus import read_manifest
    from lightning_app.evaluation.test_sets import real_segment
    from lightning_app.metrics import functional as MF
    from lightning_app.restoring.engine import Restorer
    from lightning_app.restoring.networks import bundled_model
    from lightning_app.systems.checkpoints import load_model

    model = load_model(checkpoint or bundled_model())
    rate = int(model.sample_rate)
    rows_ = [r for r in read_manifest(corpus) if r["split"] == split and r["content"] == "music"]
    groups = sorted({r["group"] for r in rows_})
    systems = {"model alone": Restorer(model, guard=False), "model + guard": Restorer(model)}
    table, audio = [], {}
    for i in range(min(clips, len(groups))):
        members = [r for r in rows_ if r["group"] == groups[i]]
        clean = real_segment(
            Path(corpus), members, np.random.default_rng((i, 11)), round(seconds * rate), rate
        )
        if clean is None:
            continue
        name = f"{members[0]['package']}: {Path(members[0]['file']).stem}"
        tracks = {"input (clean)": clean}
        for label, restorer in systems.items():
            out = restorer(clean[:, None].astype(np.float64), rate)[:, 0]
            est, ref = torch.from_numpy(out)[None], torch.from_numpy(clean.astype(np.float32))[None]
            table.append(
                {
                    "clip": name,
                    "system": label,
                    "si_sdr_vs_input": float(MF.si_sdr(est, ref)[0]),
                    "amplitude_retention": float(MF.amplitude_retention(est, ref)[0]),
                    "removed_db": float(10 * np.log10(np.sum((clean - out) ** 2) / np.sum(clean**2) + 1e-12)),
                }
            )
            tracks[f"removed, {label}"] = clean - out
        audio[name] = tracks
    return {"rows": table, "audio": audio, "rate": rate}
