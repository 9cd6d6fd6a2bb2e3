"""The documentation's pictures, made by the suite from its own outputs (``make docs-figures``).

- ``restored_excerpts``: what the bundled model does to a recording, as noisy / restored / removed
  spectrograms on one dB scale per row; a real recording of the corpus's test split per content
  (``make corpus``), degraded by the archive experiment's noise generators, or procedural clips where
  there is no corpus (the figure's title says which).
- ``gains_chart``: the mean SI-SDR gain per content of every system ``evaluate`` runs scored, read from their
  report.csv (procedural test set) and real.csv (real test set); nothing in it is typed in by hand. Several
  runs on the same test sets may be drawn together: the baselines do not depend on a model, so one run with
  them and a later one of the model alone (``--no-baselines``) make the chart.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np

from lightning_app.evaluation import spectrograms

EXCERPT_SNR_DB = (9.0, 11.0)  # a moderately worn record: noise plain to hear, the music well above it


def excerpt_clips(corpus: Path | None, seconds: float = 6.0) -> tuple[list[dict], int, str]:
    """One clip per content (music, speech) and where they come from, in words."""
    from lightning_app.evaluation import test_sets

    if corpus is not None and (Path(corpus) / "manifest.csv").exists():
        clips, rate = test_sets.real_test_set(
            Path(corpus), clips_per_content=1, seconds=seconds, draw=test_sets.RealDraw(snr_db=EXCERPT_SNR_DB)
        )
        return clips, rate, "real recordings (corpus test split) under the suite's historical noise"
    clips, rate = test_sets.synthetic_test_set(8, seconds, [], experiment="archive_fullband")
    chosen = {}
    for clip in clips:
        chosen.setdefault(clip.get("content", "speech"), clip)
    return list(chosen.values()), rate, "procedural clips (no corpus: `make corpus` for real recordings)"


def restored_excerpts(model: Path, path: Path, corpus: Path | None = None, seconds: float = 6.0) -> str:
    """Restore one clip per content with ``model`` (the guard on, as ``denoise`` does) and draw noisy /
    restored / removed. Returns a one-line description with the measured gains."""
    from lightning_app.data.dsp import si_sdr_db
    from lightning_app.restoring.engine import Restorer
    from lightning_app.restoring.networks import open_network

    clips, rate, origin = excerpt_clips(corpus, seconds)
    restorer = Restorer(open_network(model))
    rows, labels, gains = [], [], []
    for clip in clips:
        noisy = np.asarray(clip["noisy"], dtype=np.float32)
        restored = restorer(noisy[:, None], rate)[:, 0]
        gain = si_sdr_db(clip["clean"], restored) - si_sdr_db(clip["clean"], noisy)
        gains.append(f"{clip['content']} {gain:+.1f} dB")
        rows.append({"noisy": noisy, "restored": restored, "removed": noisy - restored})
        labels.append(f"{clip['content']}, input SNR {clip['snr_db']:.0f} dB\nSI-SDR gain {gain:+.1f} dB")
    fig, _ = spectrograms.figure(
        rows,
        rate,
        titles={
            "noisy": "noisy input",
            "restored": f"restored ({Path(model).name})",
            "removed": "removed (input − restored)",
        },
        row_labels=labels,
        title=f"The bundled archive model on {origin}",
        width=13.0,
        row_height=2.9,
        dpi=80,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    return f"{path}: {origin}; " + ", ".join(gains)


def read_gains(*report_dirs: Path) -> dict[str, dict[str, float]]:
    """{system: {content label: mean SI-SDR gain}} from evaluate folders' report.csv and real.csv; a system
    that a later folder scored too is taken from the later folder, whole."""
    gains: dict[str, dict[str, float]] = {}
    for report_dir in report_dirs:
        found: dict[str, dict[str, float]] = {}
        for name, label in (("report.csv", "procedural {}"), ("real.csv", "real {}")):
            path = Path(report_dir) / name
            if not path.exists():
                continue
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    content = row["group"].removeprefix("content: ")
                    if content not in ("music", "speech") or row["system"] == "noisy input":
                        continue
                    value = float(row["si_sdr_i"]) if row["si_sdr_i"] else math.nan
                    # the real set names mix 1 plainly
                    system = re.sub(r" \(mix 1(\.0*)?\)$", "", row["system"])
                    found.setdefault(system, {})[label.format(content)] = value
        if not found:
            raise FileNotFoundError(f"{report_dir}: no report.csv or real.csv with music/speech rows")
        gains.update(found)
    return gains


#: an ablation's extra rows (evaluate --ablation): the chart compares what users would run
ABLATION_MARKS = ("(no guard)", "guard alone")


def gains_chart(report_dirs: Path | list[Path], path: Path) -> str:
    """Grouped bars: the mean SI-SDR gain per content of every system in ``report_dirs`` (``read_gains``; not
    the ablation's rows)."""
    report_dirs = [report_dirs] if isinstance(report_dirs, str | Path) else list(report_dirs)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gains = {s: v for s, v in read_gains(*report_dirs).items() if not any(m in s for m in ABLATION_MARKS)}
    groups = list(dict.fromkeys(label for values in gains.values() for label in values))
    systems = list(gains)
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
    for i, system in enumerate(systems):
        xs = np.arange(len(groups)) + (i - (len(systems) - 1) / 2) * width
        values = [gains[system].get(g, math.nan) for g in groups]
        ax.bar(xs, values, width * 0.92, label=system, zorder=2)
        for x, v in zip(xs, values, strict=True):
            if math.isfinite(v):
                ax.text(x, v, f"{v:+.1f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("mean SI-SDR gain over the input (dB)")
    ax.set_title(
        "Gain over the noisy input per content: below 0 the system made the recording worse", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return f"{path}: {len(systems)} systems x {len(groups)} contents from {', '.join(map(str, report_dirs))}"
