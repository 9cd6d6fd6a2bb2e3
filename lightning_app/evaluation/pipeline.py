"""Evaluation runs: checkpoints and baselines on the procedural, paired and real test sets, and
reconstruction chains.

``lightning_app.evaluate`` is its command line (what the reports hold is described there).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lightning_app import config as C
from lightning_app.data import audio_io
from lightning_app.data.datasets import CONTENTS
from lightning_app.evaluation import tables
from lightning_app.evaluation.baselines import baselines
from lightning_app.evaluation.chains import Chain
from lightning_app.evaluation.reports import (
    annotated,
    markdown_table,
    skipped_section,
    spectrogram_panel,
    write_csv,
    write_plots,
    write_reports,
)
from lightning_app.evaluation.scoring import (
    COLUMNS,
    LABELS,
    NOISY,
    checkpoint_name,
    clean_input_scores,
    finite_mean,
    guard_alone_process,
    model_process,
    perceptual_scores,
    restoring_model,
    run_system,
    score,
    summarise,
)
from lightning_app.evaluation.test_sets import (
    DEFAULT_EXPERIMENT,
    SHELF_CORNER_HZ,
    RealDraw,
    label_contents,
    paired_test_set,
    real_test_set,
    silent_clean_rms,
    snr_buckets,
    synthetic_test_set,
    with_high_shelf,
)
from lightning_app.metrics.perceptual import speech_content
from lightning_app.metrics.quality import WORSE_THAN_INPUT_DB, waveform_scores
from lightning_app.metrics.visqol import visqol_missing
from lightning_app.restoring.engine import Restorer
from lightning_app.restoring.files import residual_path, restore_file
from lightning_app.restoring.networks import bundled_model

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- reconstruction chains
CHAIN_COLUMNS = ("snr", "si_sdr", "waveform_correlation", "spectral_correlation", "pesq", "stoi", "rtf")


def evaluate_chains(
    output_dir: Path,
    chains: list[tuple[str, Chain]],
    data: Path | None = None,
    clips: int | None = None,
    seconds: float = 3.0,
    workers: int = 2,
    panel_clips: int = 2,
    content: str = "auto",
) -> dict:
    """Each chain, ``(name, fn(audio, sample_rate) -> audio)``, reconstructs the *clean* clips and is
    scored against them with the model metrics (PESQ/STOI on the speech clips: a paired corpus's unlabelled
    files are labelled by ``content``, "auto": guessed). Writes chains.md, chains.csv and
    chains_spectrograms.png."""
    from lightning_app.metrics import functional as MF

    skipped, contents = [], None
    if data is not None:
        # the chains are the research's speech chains: at the default experiment's rate
        test_clips, rate, skipped = paired_test_set(
            Path(data), C.compose(DEFAULT_EXPERIMENT).data.sample_rate, clips, silent_clean_rms()
        )
        if not test_clips:
            raise FileNotFoundError(
                f"nothing to reconstruct in {data}: all {len(skipped)} pairs skipped: "
                + "; ".join(s["reason"] for s in skipped[:5])
            )
        contents = label_contents(test_clips, rate, content, "the speech/ and music/ folders")
    else:
        test_clips, rate = synthetic_test_set(clips or 48, seconds, [])
    rows, jobs, keys = [], [], []
    shown = test_clips[:panel_clips]
    panel = {"clean": [c["clean"] for c in shown]}
    for name, chain in chains:
        outputs, rtf = run_system(chain, [dict(c, noisy=c["clean"]) for c in test_clips], rate)
        panel[name] = outputs[: len(shown)]
        per_clip = []
        for i, (clip, out) in enumerate(zip(test_clips, outputs, strict=True)):
            est, ref = torch.from_numpy(out)[None], torch.from_numpy(clip["clean"])[None]
            per_clip.append(
                {
                    "snr": float(MF.snr(est, ref)[0]),
                    "si_sdr": float(MF.si_sdr(est, ref)[0]),
                    "waveform_correlation": float(MF.pearson(est, ref)[0]),
                    "spectral_correlation": float(MF.spectral_correlation(est, ref)[0]),
                }
            )
            jobs.append((clip["clean"], out, rate, speech_content(clip["content"]), False))
            keys.append((len(rows), i))
        rows.append({"system": name, "clips": len(test_clips), "rtf": rtf, "_per_clip": per_clip})
        log.info("ran chain %s (real-time factor %.4f)", name, rtf)
    for (row, i), result in zip(keys, perceptual_scores(jobs, workers), strict=True):
        rows[row]["_per_clip"][i].update(pesq=result["pesq"], stoi=result["stoi"])
    for row in rows:
        per_clip = row.pop("_per_clip")
        for column in CHAIN_COLUMNS[:-1]:
            row[column] = finite_mean(c[column] for c in per_clip)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "chains.csv", ["system", "clips", *CHAIN_COLUMNS], rows)
    source = (
        f"paired corpus {data}"
        if data is not None
        else f"built-in synthetic test set, clean clips of {seconds:g} s"
    )
    spectrogram_panel(
        panel, [c["name"] for c in shown], rate, output_dir / "chains_spectrograms.png", titles_fontsize=6
    )
    table_columns = shown_columns(test_clips, visqol_clips=0, columns=CHAIN_COLUMNS)
    report = (
        "\n".join(
            [
                f"# Reconstruction chains: {source} ({len(test_clips)} clips)",
                "",
                "Each chain reconstructs the clean signal; scores are against it.",
                "",
                *([contents["note"], ""] if contents else []),
                *markdown_table(rows, table_columns),
                "",
                "![spectrograms of the first clips](chains_spectrograms.png)",
                "",
                *skipped_section(skipped, len(test_clips)),
            ]
        )
        + "\n"
    )
    (output_dir / "chains.md").write_text(report)
    return {
        "rows": rows,
        "report": report,
        "outputs": panel,
        "sample_rate": rate,
        "skipped": skipped,
        "evaluated": len(test_clips),
    }


# ----------------------------------------------------------------------------- entry point
def checkpoint_systems(checkpoints: list[Path], device: str, ablation: bool) -> tuple[list, list]:
    """(models as (name, process, rate), systems as (name, process)); a bad checkpoint fails here, early.
    With ``ablation``, each model without the guard and the guard over a model that removes everything."""
    models = [(checkpoint_name(p), *model_process(p, device)) for p in checkpoints]
    systems = [(name, process) for name, process, _ in models]
    if ablation:
        systems += [
            (f"{checkpoint_name(p)} (no guard)", model_process(p, device, guard=False)[0])
            for p in checkpoints
        ]
        if models:
            systems.append(("guard alone", guard_alone_process(models[0][2])))
    return models, systems


def paired_or_synthetic(
    data: Path | None,
    clips: int | None,
    seconds: float,
    overrides,
    experiment: str | None,
    model_rate: int | None,
    output_dir: Path,
) -> tuple[list[dict], int, list[dict], str]:
    """(clips, rate, skipped pairs, description): a paired corpus when ``data`` is given, else the built-in
    synthetic test set of ``experiment``. A corpus whose every pair is skipped still gets its report."""
    if data is None:
        experiment = experiment or DEFAULT_EXPERIMENT
        test_clips, rate = synthetic_test_set(clips or 48, seconds, list(overrides), experiment)
        description = (
            f"built-in synthetic test set of {experiment} "
            f"({len(test_clips)} clips of {seconds:g} s at {rate} Hz)"
        )
        return test_clips, rate, [], description
    if model_rate is None or experiment is not None:
        model_rate = C.compose(experiment or DEFAULT_EXPERIMENT, list(overrides)).data.sample_rate
    test_clips, rate, skipped = paired_test_set(
        Path(data), model_rate, clips, silent_clean_rms(experiment, overrides)
    )
    left_out = f", {len(skipped)} skipped" if skipped else ""
    description = f"paired corpus {data} at {rate} Hz ({len(test_clips)} files{left_out})"
    if not test_clips:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_csv(output_dir / "report.csv", ["group", "system", "clips", *COLUMNS], [])
        write_csv(output_dir / "skipped.csv", ["file", "reason"], skipped)
        text = [f"# Evaluation: {description}", "", *skipped_section(skipped, 0)]
        (output_dir / "report.md").write_text("\n".join(text) + "\n")
        raise FileNotFoundError(
            f"nothing evaluated in {data}: all {len(skipped)} pairs skipped "
            f"(see {output_dir / 'report.md'}#skipped)"
        )
    return test_clips, rate, skipped, description


def run_systems(processes, systems, test_clips: list[dict], rate: int, mixes) -> tuple[dict, dict]:
    """(outputs, real-time factors) per system name; each checkpoint also at every ``mixes`` blend."""
    outputs, rtf = {NOISY: [c["noisy"] for c in test_clips]}, {NOISY: 0.0}
    for name, process in processes:
        estimates, rtf[name] = run_system(process, test_clips, rate, name)
        log.info("ran %s on %d clips (real-time factor %.4f)", name, len(test_clips), rtf[name])
        if name not in dict(systems):
            outputs[name] = estimates
            continue
        # The mix is linear, so each blend comes from the one model pass (and costs what it costs).
        for mix in mixes:
            label = f"{name} (mix {mix:g})"
            outputs[label] = [
                mix * e + (1 - mix) * c["noisy"] for e, c in zip(estimates, test_clips, strict=True)
            ]
            rtf[label] = rtf[name]
        del rtf[name]
    return outputs, rtf


def measure_notes(test_clips: list[dict], visqol_clips: int, missing: str | None) -> list[str]:
    speech = sum(speech_content(c["content"]) for c in test_clips)
    scope = (
        f"the first {visqol_clips} clips"
        if visqol_clips
        else f"not computed: {missing or '--visqol-clips 0'}"
    )
    pesq = (
        f"computed on the speech clips only ({speech} of {len(test_clips)} clips)"
        if speech
        else f"computed on the speech clips only: none of the {len(test_clips)} clips is speech, so they are "
        "left out of the tables"
    )
    return [
        f"PESQ and STOI are speech measures: {pesq}. ViSQOL (v3 audio mode, MOS-LQO 1-5, music and speech; "
        f"{scope}) is level-blind: it rescales "
        "the output to the clean level before comparing, so read it next to amplitude retention, "
        "never instead. "
        "LSD: log-spectral distance in dB (lower is better)."
    ]


def shown_columns(test_clips: list[dict], visqol_clips: int, columns=COLUMNS) -> tuple[str, ...]:
    """The report tables' ``columns``: PESQ/STOI only when some clip is speech, ViSQOL only when computed."""
    dropped = set()
    if not any(speech_content(c["content"]) for c in test_clips):
        dropped |= {"pesq", "pesq_i", "stoi", "stoi_i"}
    if not visqol_clips:
        dropped |= {"visqol", "visqol_i"}
    return tuple(c for c in columns if c not in dropped)


def evaluate(
    checkpoints: list[Path],
    output_dir: Path,
    data: Path | None = None,
    clips: int | None = None,
    seconds: float = 3.0,
    mixes=(1.0, 0.5, 0.3),
    workers: int = 2,
    with_baselines: bool = True,
    overrides: list[str] = (),
    experiment: str | None = None,
    visqol_clips: int = 16,
    device: str = "cpu",
    ablation: bool = False,
    real_corpus: Path | None = None,
    real_clips: int = 36,
    content: str = "auto",
    real_split: str = "test",
    real_shelves_db: tuple[float, ...] = (),
    real_draw: RealDraw = RealDraw(),
) -> dict:
    """Score every system and write the reports; returns {"rows", "report", "plots", "content", ...}. The
    checkpoints run on ``device`` (cpu, cuda, auto); the baselines and the scoring on the CPU. A paired
    corpus's files in no speech/ or music/ folder get ``content`` ("speech", "music"; "auto": guessed from
    each clean file, metrics/content.py), and the report says which and how. ``real_corpus`` adds the real
    set (``evaluate_real``) from its ``real_split``, drawn as ``real_draw`` says."""
    models, systems = checkpoint_systems(checkpoints, device, ablation)
    model_rate = models[0][2] if models else None  # the rate the (first) model works at
    test_clips, rate, skipped, description = paired_or_synthetic(
        data, clips, seconds, overrides, experiment, model_rate, output_dir
    )
    if data is None:
        experiment = experiment or DEFAULT_EXPERIMENT
    contents = label_contents(
        test_clips,
        rate,
        content,
        "the test set's generator" if data is None else "the speech/ and music/ folders",
    )
    missing = visqol_missing() if visqol_clips else None
    if missing:
        log.warning("ViSQOL skipped: %s", missing)
    visqol_clips = 0 if missing else min(visqol_clips, len(test_clips))
    baselines_ = list(baselines().items()) if with_baselines else []
    processes = [*baselines_, *systems]  # built once: DFN3 loads a library
    outputs, rtf = run_systems(processes, systems, test_clips, rate, mixes)
    scores, failures = score(
        test_clips, outputs, rate, workers, silent_clean_rms(experiment, overrides), visqol_clips
    )
    rows = summarise(scores, test_clips, rtf)
    untouched = clean_input_scores(test_clips, processes, rate)
    output_dir.mkdir(parents=True, exist_ok=True)
    panel = [s for s in outputs if "(mix" not in s or "(mix 1)" in s]
    columns = shown_columns(test_clips, visqol_clips)
    plots = write_plots(
        rows, test_clips, outputs, rate, output_dir, panel, description=description, pesq="pesq" in columns
    )
    notes = measure_notes(test_clips, visqol_clips, missing)
    report = write_reports(
        rows,
        output_dir,
        description,
        plots,
        notes,
        untouched,
        skipped,
        len(test_clips),
        columns=columns,
        failures=failures,
        content=contents,
    )
    real = None
    if real_corpus is not None:
        scored = [(n, p) for n, p in processes if n in dict(systems) or n in dict(baselines_)]
        real = evaluate_real(
            real_corpus,
            scored,
            output_dir,
            experiment or DEFAULT_EXPERIMENT,
            real_clips,
            split=real_split,
            shelves_db=real_shelves_db,
            draw=real_draw,
        )
        report += "\n" + real["report"]
        (output_dir / "report.md").write_text(report)
    return {
        "rows": rows,
        "report": report,
        "plots": plots,
        "clean_input": untouched,
        "skipped": skipped,
        "evaluated": len(test_clips),
        "real": real,
        "content": contents,
        "failures": failures,
    }


REAL_COLUMNS = ("clips", "si_sdr_i", "worst_si_sdr_i", "clips_worse_than_input", "amplitude_retention")

#: real_clips.csv: one row per clip and system, to find and listen to the clips behind the tables
REAL_CLIP_COLUMNS = (
    "clip",
    "system",
    "content",
    "track",
    "shelf_db",
    "snr_db",
    "noise",
    "si_sdr_i",
    "worse_than_input",
    "amplitude_retention",
)

REAL_LABELS = {
    "si_sdr_i": "mean SI-SDR gain (dB)",
    "worst_si_sdr_i": "worst clip (dB)",
    "clips_worse_than_input": f"clips worse than input by > {WORSE_THAN_INPUT_DB:g} dB",
    "amplitude_retention": "retention",
}


#: Real-set clips scored at once: the spectral measures hold the spectrograms of a whole batch (800 six-second
#: clips at once, the val split with two shelves, took over 24 GB and the process was killed).
REAL_SCORE_BATCH = 64


def evaluate_real(
    root: Path,
    systems: list,
    output_dir: Path,
    experiment: str,
    clips_per_content: int = 36,
    seconds: float = 6.0,
    split: str = "test",
    shelves_db: tuple[float, ...] = (),
    draw: RealDraw = RealDraw(),
) -> dict:
    """The real-recordings test set (``real_test_set`` on the corpus's ``split``: test, or val to tune on,
    since the test split is only reported; ``draw``: a harder draw of it, the val split only): every system
    restores each degraded clip and each clean clip; per content and per 5-dB input-SNR bucket the mean SI-SDR
    gain, the worst clip, the clips made worse than their input, retention; and the clean-input table.
    ``shelves_db``: the music clips again, brighter or darker by each high shelf (``with_high_shelf``), each
    shelf a group of its own. Writes real.md, real.csv."""
    if split != "val" and not draw.is_default:
        raise ValueError("a harder draw of the real set (SNRs, seed, noise types) is for the val split only")
    base, rate = real_test_set(Path(root), split, clips_per_content, seconds, experiment, draw)
    music = [c for c in base if c["content"] == "music"]
    clips = base + [copy for gain in shelves_db for copy in with_high_shelf(music, rate, gain)]
    outputs = {NOISY: [c["noisy"] for c in clips]}
    for name, process in systems:
        outputs[name], _ = run_system(process, clips, rate, f"{name} (real)")
        log.info("ran %s on the real set of the corpus's %s split (%d clips)", name, split, len(clips))

    def t(signals):  # the clips share one length: one (clips, 1, samples) batch
        return torch.from_numpy(np.stack([np.asarray(x, dtype=np.float32) for x in signals]))[:, None]

    groups_ = {}
    for content in sorted({c["content"] for c in base}):
        members = [i for i, c in enumerate(base) if c["content"] == content]
        groups_[content] = members
        for low, high in snr_buckets(draw.snr_db):
            groups_[f"{content}, input SNR {low:g}-{high:g} dB"] = [
                i for i in members if low <= clips[i]["snr_db"] < high
            ]
    for gain in shelves_db:
        groups_[f"music through a high shelf of {gain:+g} dB above {SHELF_CORNER_HZ / 1000:g} kHz"] = [
            i for i, c in enumerate(clips) if c.get("shelf_db") == float(gain)
        ]
    rows = []
    silent_rms = silent_clean_rms(experiment)

    def scores(estimates) -> dict[str, list]:
        """Per-clip scores, REAL_SCORE_BATCH clips at a time (a clip's scores do not depend on the others)."""
        values: dict[str, list] = {}
        for i in range(0, len(clips), REAL_SCORE_BATCH):
            part = clips[i : i + REAL_SCORE_BATCH]
            got, _ = waveform_scores(
                t(estimates[i : i + REAL_SCORE_BATCH]),
                t(c["noisy"] for c in part),
                t(c["clean"] for c in part),
                silent_rms=silent_rms,
                sample_rate=rate,
            )
            for key, v in got.items():
                values.setdefault(key, []).extend(v.tolist())
        return values

    clip_rows = []
    for name, estimates in outputs.items():
        values = scores(estimates)
        gain, kept = values["si_sdr_i"], values["amplitude_retention"]
        worse = values["worse_than_input"]  # 1, 0, or NaN for a clip that was not scored
        clip_rows += [
            {
                "clip": clip["name"],
                "system": name,
                "content": clip["content"],
                "track": clip["track"],
                "shelf_db": clip.get("shelf_db", 0.0),
                "snr_db": clip["snr_db"],
                "noise": "+".join(clip["noise_types"]),
                "si_sdr_i": gain[i],
                "worse_than_input": worse[i],
                "amplitude_retention": kept[i],
            }
            for i, clip in enumerate(clips)
        ]
        for group, members in groups_.items():
            if members:
                rows.append(
                    {
                        "system": name,
                        "group": group,
                        "clips": len(members),
                        "si_sdr_i": finite_mean(gain[i] for i in members),
                        "worst_si_sdr_i": min(gain[i] for i in members),
                        "clips_worse_than_input": sum(worse[i] == 1.0 for i in members),
                        "amplitude_retention": finite_mean(kept[i] for i in members),
                    }
                )
    clean_rows = clean_input_scores(base, systems, rate)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "real.csv", ["group", "system", *REAL_COLUMNS], rows)
    write_csv(output_dir / "real_clips.csv", REAL_CLIP_COLUMNS, clip_rows)
    labels = {**LABELS, **REAL_LABELS}
    packages = sorted({c["origin"] for c in base})
    text = [
        f"# Real recordings: the corpus's {split} split ({Path(root)})"
        + ("" if split == "test" else ": the split to tune on, not a test result"),
        "",
        f"{len(base)} clips of {seconds:g} s at {rate} Hz from {', '.join(packages)}, degraded by the "
        f"{experiment} noise generators at {draw.describe()} "
        "(waveform measures only; PESQ/STOI/ViSQOL are in the procedural report above).",
        "",
    ]
    for group in groups_:
        selected = [r for r in rows if r["group"] == group]
        if selected:
            shown, _ = annotated(selected, REAL_COLUMNS)  # a retention cell carries its alarm
            text += [f"## {group}", "", *tables.records(shown, REAL_COLUMNS, "system", labels=labels), ""]
    text += worse_clips_section(clip_rows)
    text += [
        "## Clean input (real): does it leave clean recordings alone?",
        "",
        "SI-SDR of each system's output against the clean clip it was given "
        "(a restorer should stay above 25 dB).",
        "",
        *tables.records(
            [{**r, "system": f"{r['system']} ({r['group']})"} for r in clean_rows],
            ("clips", "median_si_sdr", "p10_si_sdr"),
            "system",
            labels=labels,
        ),
        "",
    ]
    report = "\n".join(text) + "\n"
    (output_dir / "real.md").write_text(report)
    return {"rows": rows, "clean_input": clean_rows, "report": report, "clips": len(base)}


def worse_clips_section(clip_rows: list[dict]) -> list[str]:
    """real.md's list of the clips each system made worse than their input, worst first: the ones to listen
    to (every clip's figures are in real_clips.csv)."""
    worse = [r for r in clip_rows if r["worse_than_input"] == 1.0 and r["system"] != NOISY]
    text = [f"## Clips made worse than their input by > {WORSE_THAN_INPUT_DB:g} dB", ""]
    if not worse:
        return [*text, "None, by any system.", ""]
    shown = [
        {
            **r,
            "shelf": f"{r['shelf_db']:+g} dB" if r["shelf_db"] else "",
            "snr_db": f"{r['snr_db']:.1f}",
            "si_sdr_i": f"{r['si_sdr_i']:.2f}",
        }
        for r in sorted(worse, key=lambda r: (r["system"], r["si_sdr_i"]))
    ]
    columns = ("clip", "content", "track", "shelf", "snr_db", "noise", "si_sdr_i")
    labels = {"snr_db": "input SNR (dB)", "si_sdr_i": "SI-SDR gain (dB)"}
    return [
        *text,
        "Worst first, per system; every clip's figures are in real_clips.csv. The track is the recording the",
        "clip was cut from (the corpus manifest's group).",
        "",
        *tables.records(shown, columns, "system", labels=labels),
        "",
    ]


def reference_free(folder: Path) -> bool:
    """A --data folder of noisy files alone: no clean/ references beside them."""
    return folder.is_dir() and not (folder / "clean").is_dir()


def evaluate_folder(
    checkpoints: list[Path],
    folder: Path,
    output_dir: Path,
    mix: float = 1.0,
    clips: int | None = None,
    content: str = "auto",
) -> dict:
    """Restore every file of ``folder`` (its noisy/ subfolder if it has one) with each checkpoint (none: the
    bundled model) into ``output_dir/restored/<checkpoint>/`` and write the listening report there;
    {"page", "rows" (report.csv's), "content" (one line: the files' contents and where they came from)}.
    A file's content is its speech/ or music/ folder, else ``content`` ("auto": not labelled — with no clean
    reference there is nothing to guess from honestly, and DNSMOS, a speech measure, is then not shown).
    A file that cannot be restored is reported with the reason."""
    from lightning_app.evaluation.listening_report import TABLE, ReportEntry, write_listening_report

    root = folder / "noisy" if (folder / "noisy").is_dir() else folder
    files = audio_io.find_audio_files(root)[:clips]
    if not files:
        raise FileNotFoundError(f"{root}: no audio files (.wav, .flac, .ogg)")
    if not checkpoints:
        try:
            checkpoints = [bundled_model()]
        except ValueError as exc:  # CheckpointError: not in this checkout
            raise ValueError(
                f"{str(exc).split(';')[0]}; name the checkpoints to restore with: python -m "
                f"lightning_app.evaluate CKPT ... --data {folder} (make evaluate CKPTS=...)"
            ) from None
        log.info("no checkpoint given: restoring with the bundled model %s", checkpoints[0])
    entries = []
    for checkpoint in checkpoints:
        name = checkpoint_name(checkpoint)
        restorer = Restorer(restoring_model(checkpoint), mix=mix)
        for src in files:
            rel = src.relative_to(root)
            dst = output_dir / "restored" / name / rel
            share = None
            try:
                restore_file(restorer, src, dst, residual_path(dst))
                share = restorer.guard_share()
            except (
                audio_io.AudioFileError
            ) as exc:  # the report names the input's fault; others are logged here
                log.warning("not restored: %s", exc)
            top = rel.parts[0] if len(rel.parts) > 1 else None
            label = rel.as_posix() if len(checkpoints) == 1 else f"{rel.as_posix()} · {name}"
            if top in CONTENTS:
                kind, source = top, f"its {top}/ folder"
            elif content != "auto":
                kind, source = content, f"--content {content}"
            else:
                kind, source = None, None
            entries.append(ReportEntry(src, dst, residual_path(dst), kind, label, share, source))
        log.info("restored %d file(s) with %s (mix %g)", len(files), name, mix)
    names = ", ".join(checkpoint_name(c) for c in checkpoints)
    page = write_listening_report(entries, output_dir, title=f"Listening report: {root} restored by {names}")
    with open(output_dir / TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    return {"page": page, "rows": rows, "content": folder_content_note(entries[: len(files)], content)}


def folder_content_note(entries: list, content: str) -> str:
    """ "Content: music 2 (their music/ folder), not labelled 1 (...)": the listening report's files by
    content and where each label came from."""
    found = Counter((e.content, e.content_source) for e in entries)
    parts = []
    for (kind, source), n in sorted(found.items(), key=lambda x: (x[0][0] is None, str(x[0]))):
        if kind is None:
            parts.append(
                f"not labelled {n} (DNSMOS, a speech measure, not shown for them; put files in speech/ or "
                "music/ folders, or pass --content speech|music)"
            )
        else:
            where = "their folder" if source.endswith("folder") else source
            parts.append(f"{kind} {n} ({where})")
    return "Content: " + ", ".join(parts) + "."
