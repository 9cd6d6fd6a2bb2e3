"""What an evaluation writes: markdown and CSV reports, plots and spectrogram panels."""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import numpy as np

from lightning_app.evaluation import spectrograms, tables
from lightning_app.evaluation.scoring import COLUMNS, LABELS, NOISY


# ----------------------------------------------------------------------------- reports
def markdown_table(rows: list[dict], columns, key: str = "system") -> list[str]:
    return tables.records(rows, columns, key, labels=LABELS)


def pivot(rows: list[dict], prefix: str, metric: str) -> list[str]:
    """systems × groups starting with ``prefix``, for one metric."""
    selected = [r for r in rows if r["group"].startswith(prefix)]
    names = list(dict.fromkeys(r["group"] for r in selected))
    systems = list(dict.fromkeys(r["system"] for r in selected))
    value = {(r["system"], r["group"]): r[metric] for r in selected}
    counts = {r["group"]: r["clips"] for r in selected}
    heads = [f"{n[len(prefix) :]} ({counts[n]})" for n in names]
    lines = tables.markdown(["system", *heads], [[s, *(value[(s, n)] for n in names)] for s in systems])
    return lines


def write_csv(path: Path, fieldnames, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames))
        writer.writeheader()
        writer.writerows(rows)


def skipped_section(skipped: list[dict], evaluated: int) -> list[str]:
    """The report's "## Skipped" table (anchor #skipped): one row per pair left out, with its reason."""
    if not skipped:
        return []
    return [
        "## Skipped",
        "",
        f"{len(skipped)} of {len(skipped) + evaluated} pairs could not be scored and are left "
        "out of every table (also in skipped.csv):",
        "",
        *tables.markdown(["file", "reason"], [[s["file"], s["reason"].replace("|", "/")] for s in skipped]),
        "",
    ]


def write_reports(
    rows: list[dict],
    output_dir: Path,
    description: str,
    plots: list[str],
    notes: list[str] = (),
    clean_input: list[dict] = (),
    skipped: list[dict] = (),
    evaluated: int = 0,
) -> str:
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "report.csv", ["group", "system", "clips", *COLUMNS], rows)
    write_csv(output_dir / "skipped.csv", ["file", "reason"], list(skipped))
    overall = [r for r in rows if r["group"] == "overall"]
    text = [
        f"# Evaluation: {description}",
        "",
        "## Overall",
        "",
        *markdown_table(overall, COLUMNS),
        "",
        "`rtf`: seconds of compute per second of audio on this machine. `*_i`: gain over the noisy input "
        "(`lsd_i` = input LSD - output LSD, so positive is better there too).",
        *(x for n in notes for x in ("", n)),
        "",
        *skipped_section(skipped, evaluated),
    ]
    if any(r["group"].startswith("content: ") for r in rows):
        for title, metric in (
            ("SI-SDR improvement (dB) by content", "si_sdr_i"),
            ("Amplitude retention by content", "amplitude_retention"),
            ("ViSQOL (MOS-LQO) by content", "visqol"),
            ("LSD (dB) by content", "lsd"),
        ):
            text += [f"## {title}", "", *pivot(rows, "content: ", metric), ""]
    if clean_input:
        text += [
            "## Clean input: does it leave clean audio alone?",
            "",
            "Each system restores the clean clips; SI-SDR of its output against them (higher is better; "
            "a restorer should stay above 25 dB).",
            "",
            *markdown_table(
                [{**r, "system": f"{r['system']} ({r['group']})"} for r in clean_input],
                ("clips", "median_si_sdr", "p10_si_sdr", "amplitude_retention"),
            ),
            "",
        ]
    for title, prefix, metric in (
        ("SI-SDR improvement (dB) by noise type (clips containing it)", "noise: ", "si_sdr_i"),
        ("PESQ by noise type", "noise: ", "pesq"),
        ("SI-SDR improvement (dB) by input SNR", "input SNR ", "si_sdr_i"),
        ("PESQ by input SNR", "input SNR ", "pesq"),
        ("Amplitude retention by input SNR", "input SNR ", "amplitude_retention"),
    ):
        text += [f"## {title}", "", *pivot(rows, prefix, metric), ""]
    text += ["## Plots", ""] + [f"![{p}]({p})" for p in plots]
    report = "\n".join(text) + "\n"
    (output_dir / "report.md").write_text(report)
    return report


def system_styles(systems: list[str]) -> dict[str, dict]:
    """Plot style per system: one colour per checkpoint (or baseline) shared by its mix values, which
    differ in line style, so a model's mix curves read as one family."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    bases = list(dict.fromkeys(s.split(" (mix ")[0] for s in systems))
    dashes = {"1": "-", "0.5": "--", "0.3": ":"}
    styles = {}
    for system in systems:
        base, _, mix = system.partition(" (mix ")
        colour = "black" if base == NOISY else palette[bases.index(base) % len(palette)]
        styles[system] = {"color": colour, "linestyle": dashes.get(mix.rstrip(")"), "-.") if mix else "-"}
    return styles


def write_plots(
    rows: list[dict],
    clips: list[dict],
    outputs: dict[str, list[np.ndarray]],
    sample_rate: int,
    output_dir: Path,
    panel_systems: list[str],
    panel_clips: int = 3,
    description: str = "",
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    buckets = [r for r in rows if r["group"].startswith("input SNR ")]
    groups_ = list(dict.fromkeys(r["group"] for r in buckets))
    counts = {r["group"]: r["clips"] for r in buckets}
    labels = [f"{g[len('input SNR ') :]}\n({counts[g]} clips)" for g in groups_]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    styles = system_styles(systems)
    subtitle = f"\n{description}" if description else ""
    for metric, title in (
        ("si_sdr_i", "SI-SDR improvement over the input (dB)"),
        ("pesq", "PESQ, wideband (speech clips; MOS 1–4.5)"),
    ):
        fig, ax = plt.subplots(figsize=(10.5, 4.8))
        for system in dict.fromkeys(r["system"] for r in buckets):
            values = {r["group"]: r[metric] for r in buckets if r["system"] == system}
            ax.plot(
                range(len(groups_)),
                [values.get(g, math.nan) for g in groups_],
                marker="o",
                label=system,
                **styles[system],
            )
        ax.set_xticks(range(len(groups_)), labels)
        ax.set_xlabel("input SNR (dB)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} by input SNR{subtitle}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0
        )  # beside, never over points
        fig.tight_layout()
        names.append(f"{metric}_vs_input_snr.png")
        fig.savefig(output_dir / names[-1], dpi=110)
        plt.close(fig)

    overall = [r for r in rows if r["group"] == "overall"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(overall) + 1.6))
    ax.barh(
        [r["system"] for r in overall],
        [r["amplitude_retention"] for r in overall],
        color=[styles[r["system"]]["color"] for r in overall],
    )
    for i, r in enumerate(overall):
        ax.text(r["amplitude_retention"], i, f" {r['amplitude_retention']:.2f}", va="center", fontsize=7)
    ax.axvspan(0.8, 1.25, color="tab:green", alpha=0.15, label="level kept (0.8–1.25)")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.axvline(0.5, color="tab:red", lw=0.8, ls="--", label="muting alarm (0.5)")
    ax.invert_yaxis()
    ax.set_xlabel("amplitude retention (RMS out / RMS clean)")
    ax.set_title(f"Amplitude retention, {overall[0]['clips'] if overall else 0} clips{subtitle}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    names.append("amplitude_retention.png")
    fig.savefig(output_dir / names[-1], dpi=110)
    plt.close(fig)

    columns = ["clean", NOISY, *[s for s in panel_systems if s != NOISY]]
    shown = clips[:panel_clips]
    tracks = {s: [c["clean"] for c in shown] if s == "clean" else outputs[s][: len(shown)] for s in columns}
    names.append("spectrograms.png")
    spectrogram_panel(tracks, [c["name"] for c in shown], sample_rate, output_dir / names[-1])
    return names


def spectrogram_panel(
    tracks: dict[str, list[np.ndarray]],
    row_labels: list[str],
    sample_rate: int,
    path: Path,
    titles_fontsize: int = 7,
) -> None:
    """One column per system, one row per clip; each clip's spectrograms on one dB scale
    (spectrograms.figure)."""
    examples = [
        {system: np.asarray(tracks[system][row], dtype=np.float32) for system in tracks}
        for row in range(len(row_labels))
    ]
    titles = {system: textwrap.fill(system, 34) for system in tracks}
    fig, _ = spectrograms.figure(
        examples,
        sample_rate,
        titles=titles,
        row_labels=row_labels,
        width=max(8.0, 2.8 * len(tracks)),
        row_height=2.6,
        dpi=100,
        title_size=titles_fontsize + 1,
    )
    fig.savefig(path, dpi=fig.dpi)
