"""What an evaluation writes: markdown and CSV reports, plots and spectrogram panels."""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

import numpy as np

from lightning_app.evaluation import spectrograms, tables
from lightning_app.evaluation.scoring import (
    COLUMNS,
    COUNT_COLUMNS,
    LABELS,
    NOISY,
    PERCEPTUAL_COLUMNS,
    failed_clips,
)
from lightning_app.metrics.quality import (
    RETENTION_LOUD,
    RETENTION_MUTING,
    RETENTION_TARGET,
    SPEECH_REMOVED_LABEL,
    SPEECH_REMOVED_MEANING,
    retention_warning,
    retention_words,
)


# ----------------------------------------------------------------------------- reports
def _retention_cell(value) -> str | None:
    """A retention cell with its alarm in one word ("3.850 (LOUDER)", "0.120 (MUTING)"), or None when it has
    none."""
    alarm = retention_warning(value)
    return f"{tables.cell(value)} ({alarm.split()[0]})" if alarm else None


def annotated(rows: list[dict], columns) -> tuple[list[dict], dict[str, str]]:
    """(rows, header labels) for a table: a perceptual mean over fewer clips than the row's ``clips`` says
    how many — in the header ("[n=1 of 4]") when every row has the same count, else in the cell
    ("2.950 (n=1)") — and a retention cell carries its alarm."""
    labels = dict(LABELS)
    out = [dict(r) for r in rows]
    for column in columns:
        key = f"{column}_clips"
        if column not in PERCEPTUAL_COLUMNS or not rows or any(key not in r for r in rows):
            continue
        if all(r[key] == r["clips"] for r in rows):
            continue
        if len({(r[key], r["clips"]) for r in rows}) == 1:
            labels[column] = f"{LABELS[column]} [n={rows[0][key]} of {rows[0]['clips']}]"
        else:
            for r, o in zip(rows, out, strict=True):
                if r[key] != r["clips"]:
                    o[column] = f"{tables.cell(r[column])} (n={r[key]})"
    if "amplitude_retention" in columns:
        for r, o in zip(rows, out, strict=True):
            if r.get("system") == NOISY:  # the input, louder than clean by its noise: no output to judge
                continue
            o["amplitude_retention"] = _retention_cell(r.get("amplitude_retention")) or r.get(
                "amplitude_retention"
            )
    return out, labels


def markdown_table(rows: list[dict], columns, key: str = "system") -> list[str]:
    shown, labels = annotated(rows, columns)
    return tables.records(shown, columns, key, labels=labels)


def pivot(rows: list[dict], prefix: str, metric: str) -> list[str]:
    """systems × groups starting with ``prefix``, for one metric (a perceptual mean over fewer clips than the
    group holds says how many; a retention cell carries its alarm)."""
    selected = [r for r in rows if r["group"].startswith(prefix)]
    names = list(dict.fromkeys(r["group"] for r in selected))
    systems = list(dict.fromkeys(r["system"] for r in selected))
    value = {}
    for r in selected:
        count = r.get(f"{metric}_clips")
        text = (
            _retention_cell(r[metric]) if metric == "amplitude_retention" and r["system"] != NOISY else None
        )
        if count is not None and count < r["clips"]:
            text = f"{tables.cell(r[metric])} (n={count})"
        value[(r["system"], r["group"])] = text or r[metric]
    counts = {r["group"]: r["clips"] for r in selected}
    heads = [f"{n[len(prefix) :]} ({counts[n]})" for n in names]
    lines = tables.markdown(["system", *heads], [[s, *(value[(s, n)] for n in names)] for s in systems])
    return lines


def level_check(rows: list[dict]) -> list[str]:
    """The report's "## Level check": each system (overall, and any content) whose amplitude retention leaves
    the target band, in words — the muting alarm, LOUDER than the reference, or milder. The noisy input is
    not judged (it is what the systems are given)."""
    low, high = RETENTION_TARGET
    lines = []
    contents = {r["group"] for r in rows if r["group"].startswith("content: ")}
    for r in rows:
        if r["system"] == NOISY:
            continue  # the input: louder than clean by its noise, and no system's doing
        if r["group"] != "overall" and (r["group"] not in contents or len(contents) < 2):
            continue  # one content: the same clips as overall
        value = r.get("amplitude_retention", math.nan)
        if not math.isfinite(value) or low <= value <= high:
            continue
        if r["group"] != "overall" and retention_warning(value) is None:
            continue  # per content: the alarms only
        where = "" if r["group"] == "overall" else f" ({r['group'][len('content: ') :]})"
        words = retention_words(value)
        lines.append(f"- {r['system']}{where}: " + (f"**{words}**" if retention_warning(value) else words))
    head = [
        "## Level check",
        "",
        f"Amplitude retention (RMS output / RMS clean) belongs in {low:g}–{high:g}; under "
        f"{RETENTION_MUTING:g} a system is muting, over {RETENTION_LOUD:g} it is LOUDER than the reference.",
        "",
    ]
    return head + (lines or ["Every system keeps the level."]) + [""]


def failure_lines(failures: dict) -> list[str]:
    """One line per measure that failed on some clips: "PESQ: 1 of 4 clips scored; 3 failed (reason)" when
    every system lost the same number, else the count per system."""
    lines = []
    for name, f in (failures or {}).items():
        failed, reasons = failed_clips(f)
        if not failed:
            continue
        why = "; ".join(f"{reason} ×{n}" for reason, n in reasons.most_common(3))
        asked = f["asked"]
        if len(failed) == len(f["systems"]) and len(set(failed.values())) == 1:
            lost = next(iter(failed.values()))
            lines.append(
                f"{name.upper()}: {asked - lost} of {asked} clips scored; {lost} failed ({why}), for every "
                "system; its means are over the clips scored."
            )
        else:
            each = ", ".join(f"{s} {n}" for s, n in failed.items())
            lines.append(
                f"{name.upper()}: asked on {asked} clips; failed on some ({each}; {why}); the other systems "
                f"scored all {asked}; each mean is over the clips it scored."
            )
    return lines


def write_csv(path: Path, fieldnames, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames), extrasaction="ignore")
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
    columns=COLUMNS,
    failures: dict | None = None,
    content: dict | None = None,
) -> str:
    """report.md (returned) and report.csv (every column, and the clips behind each perceptual mean); the
    markdown tables show ``columns`` (a measure asked of no clip is left out)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "report.csv", ["group", "system", "clips", *COLUMNS, *COUNT_COLUMNS], rows)
    write_csv(output_dir / "skipped.csv", ["file", "reason"], list(skipped))
    overall = [r for r in rows if r["group"] == "overall"]
    text = [f"# Evaluation: {description}", ""]
    if content:
        text += [content["note"], ""]
    text += [
        "## Overall",
        "",
        *markdown_table(overall, columns),
        "",
        "`rtf`: seconds of compute per second of audio on this machine. `*_i`: gain over the noisy input "
        "(`lsd_i` = input LSD - output LSD, so positive is better there too). "
        f"`{SPEECH_REMOVED_LABEL}` (report.csv: speech_removed): {SPEECH_REMOVED_MEANING}.",
        *(x for n in notes for x in ("", n)),
        *(x for n in failure_lines(failures) for x in ("", n)),
        "",
        *level_check(rows),
        *skipped_section(skipped, evaluated),
    ]
    shown_pesq = "pesq" in columns
    if any(r["group"].startswith("content: ") for r in rows):
        for title, metric in (
            ("SI-SDR improvement (dB) by content", "si_sdr_i"),
            ("Amplitude retention by content", "amplitude_retention"),
            ("ViSQOL (MOS-LQO) by content", "visqol"),
            ("LSD (dB) by content", "lsd"),
        ):
            if metric in columns:
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
        if metric != "pesq" or shown_pesq:
            text += [f"## {title}", "", *pivot(rows, prefix, metric), ""]
    if content and content.get("guesses"):
        shown = content["guesses"][:20]
        more = len(content["guesses"]) - len(shown)
        text += [
            "## Content guesses",
            "",
            "Unlabelled files, each guessed from its clean reference (lightning_app.metrics.content: speech "
            "when two of spectral stability < 0.89, pauses > 20 %, fricatives > 3 %); "
            "--content speech|music sets them instead"
            + (f"; the first {len(shown)} of {len(content['guesses'])}:" if more else ":"),
            "",
            *tables.markdown(
                ["file", "guess", "measures"], [[g["file"], g["content"], g["why"]] for g in shown]
            ),
            "",
        ]
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


def retention_figure(overall: list[dict], styles: dict[str, dict], subtitle: str = ""):
    """Amplitude retention per system as bars, each labelled with its value (and its alarm: MUTING,
    LOUDER), over the target band and the alarm lines; the legend sits below the axes, where it covers
    nothing."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(overall) + 2.2), layout="constrained")
    values = [r["amplitude_retention"] for r in overall]
    ax.barh([r["system"] for r in overall], values, color=[styles[r["system"]]["color"] for r in overall])
    for i, value in enumerate(values):
        alarm = retention_warning(value)
        label = f" {value:.2f}" + (f"  {alarm.split()[0]}" if alarm else "")
        ax.text(
            value if math.isfinite(value) else 0,
            i,
            label,
            va="center",
            fontsize=7,
            color="tab:red" if alarm else "black",
            fontweight="bold" if alarm else "normal",
        )
    low, high = RETENTION_TARGET
    ax.axvspan(low, high, color="tab:green", alpha=0.15, label=f"target ({low:g}–{high:g})")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.axvline(
        RETENTION_MUTING, color="tab:red", lw=0.8, ls="--", label=f"muting alarm ({RETENTION_MUTING:g})"
    )
    ax.axvline(
        RETENTION_LOUD,
        color="tab:red",
        lw=0.8,
        ls=":",
        label=f"louder than the reference ({RETENTION_LOUD:g})",
    )
    finite = [v for v in values if math.isfinite(v)]
    ax.set_xlim(0, 1.18 * max([RETENTION_LOUD, *finite]))  # room for the value labels
    ax.invert_yaxis()
    ax.set_xlabel("amplitude retention (RMS out / RMS clean)")
    ax.set_title(f"Amplitude retention, {overall[0]['clips'] if overall else 0} clips{subtitle}", fontsize=10)
    # below the axes: a legend inside would cover the value labels at the bars' ends
    fig.legend(fontsize=7, loc="outside lower center", ncol=3)
    return fig


def write_plots(
    rows: list[dict],
    clips: list[dict],
    outputs: dict[str, list[np.ndarray]],
    sample_rate: int,
    output_dir: Path,
    panel_systems: list[str],
    panel_clips: int = 3,
    description: str = "",
    pesq: bool = True,
) -> list[str]:
    """The report's PNGs (their names): SI-SDR gain and (``pesq``: speech clips were scored) PESQ by input
    SNR, amplitude retention per system, spectrograms of the first clips."""
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
    )[: 2 if pesq else 1]:
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

    fig = retention_figure([r for r in rows if r["group"] == "overall"], styles, subtitle)
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
