"""The evaluation library: test sets, systems side by side, scores, reports and plots, chains.

``lightning_app.evaluate`` is its command line (what the reports hold is described there).
"""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing
import textwrap
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lightning_app import config as C
from lightning_app import spectrograms, tables
from lightning_app.baselines import baselines
from lightning_app.chains import Chain
from lightning_app.checkpoints import bundled_model, load_model
from lightning_app.data import audio_io
from lightning_app.data.datasets import CONTENTS, TEST_STREAM, MixtureDataset, PairedFolderDataset
from lightning_app.data.dsp import rms
from lightning_app.data.sources import build_clean_source, build_noise_source, corpus_contents
from lightning_app.metrics.perceptual import UNLABELLED, score_signal, speech_content
from lightning_app.metrics.quality import waveform_scores
from lightning_app.metrics.visqol import visqol_missing
from lightning_app.restore import Restorer, residual_path, resolve_device, restore_file
from lightning_app.restoring.guard import guard_alone

log = logging.getLogger("lightning_app.evaluate")

NOISY = "noisy input"
COLUMNS = ("si_sdr", "si_sdr_i", "snr", "snr_i", "pesq", "pesq_i", "stoi", "stoi_i", "visqol", "visqol_i", "lsd",
           "lsd_i", "amplitude_retention", "speech_removed", "spectral_correlation", "rtf")
#: units in the report's table headers (report.csv keeps the bare names)
UNITS = {"si_sdr": "dB", "si_sdr_i": "dB", "snr": "dB", "snr_i": "dB", "pesq": "MOS 1–4.5", "pesq_i": "MOS",
         "stoi": "0–1", "stoi_i": "", "visqol": "MOS 1–5", "visqol_i": "MOS", "lsd": "dB, lower is better",
         "lsd_i": "dB", "amplitude_retention": "out/clean RMS", "speech_removed": "0–1", "spectral_correlation": "0–1",
         "rtf": "s per s of audio", "median_si_sdr": "dB", "p10_si_sdr": "dB"}
LABELS = {name: f"{name} ({unit})" if unit else name for name, unit in UNITS.items()}
DEFAULT_EXPERIMENT = "supervised_unet"
SNR_BUCKETS = ((-math.inf, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, math.inf))


# ----------------------------------------------------------------------------- test set
def synthetic_test_set(clips: int, seconds: float, overrides: list[str],
                       experiment: str = DEFAULT_EXPERIMENT) -> tuple[list[dict], int]:
    """The fixed synthetic test clips from ``experiment``'s data settings (plus ``overrides``)."""
    cfg = C.compose(experiment, overrides)
    d = cfg.data
    sr = d.sample_rate
    spec = C.to_container(d.clean)
    # This set is the procedural one: real contents are scored on the real test set (real_test_set) instead.
    spec["mix"] = {name: w for name, w in spec["mix"].items() if name not in corpus_contents(spec)}
    clean = build_clean_source(sr, cache_dir=d.cache_dir, **spec)
    noise = build_noise_source(sr, cache_dir=d.cache_dir, **C.to_container(d.noise))
    dataset = MixtureDataset(clean, noise, num_samples=round(seconds * sr), snr_db=d.snr_db, gain_db=d.gain_db,
                             mode="supervised", seed=cfg.seed, length=clips, stream=TEST_STREAM)
    return [_clip(dataset[i], f"clip{i:03d}") for i in range(clips)], sr


REAL_SNR_DB = (0.0, 30.0)
REAL_SNR_BUCKETS = tuple((float(b), float(b + 5)) for b in range(0, 30, 5))
REAL_STREAM = 7  # the real test set's seed stream: no training or validation draw uses it


def real_test_set(root: Path, split: str = "test", clips_per_content: int = 36, seconds: float = 6.0,
                  experiment: str = "archive_fullband", snr_db=REAL_SNR_DB, seed: int = 1234) -> tuple[list[dict], int]:
    """Clips of the real corpus's ``split`` (data/real, ``make corpus``), degraded by the experiment's noise
    generators: per content ``clips_per_content`` clips of ``seconds``, taking the split's groups (tracks,
    speakers) in turn, at input SNRs spread evenly over ``snr_db`` so every 5-dB bucket holds its share.
    Each clip is a pure function of (seed, content, index). CorpusError (one line) when there is no corpus."""
    from lightning_app.data.corpus import read_manifest
    from lightning_app.data.mixing import gain_without_clipping, noise_at_snr

    cfg = C.compose(experiment, [])
    rate = int(cfg.data.sample_rate)
    noise = build_noise_source(rate, cache_dir=cfg.data.cache_dir, **C.to_container(cfg.data.noise))
    rows = [r for r in read_manifest(root) if r["split"] == split]
    n = round(seconds * rate)
    clips = []
    for content in sorted({r["content"] for r in rows}):
        by_group: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            if row["content"] == content:
                by_group[row["group"]].append(row)
        groups_ = sorted(by_group)
        for i in range(clips_per_content):
            rng = np.random.default_rng((seed, REAL_STREAM, CONTENTS.index(content), i))
            members = by_group[groups_[i % len(groups_)]]
            clean = _real_segment(root, members, rng, n, rate)
            if clean is None:
                continue
            snr = snr_db[0] + (i + rng.uniform()) / clips_per_content * (snr_db[1] - snr_db[0])
            noise_audio, noise_type = noise(rng, n)
            signals = {"clean": clean.astype(np.float64), "noise": noise_at_snr(clean, noise_audio, snr)}
            signals = gain_without_clipping({"clean": signals["clean"], "noisy": signals["clean"] + signals["noise"]},
                                            float(rng.uniform(-20.0, -6.0)))
            clips.append({"name": f"real-{content}{i:03d}", "noisy": signals["noisy"], "clean": signals["clean"],
                          "snr_db": float(snr), "noise_types": noise_type.split("+"), "content": content,
                          "origin": members[0]["package"]})
    if not clips:
        raise FileNotFoundError(f"{root}: the {split} split holds no usable recordings")
    return clips, rate


def _real_segment(root: Path, members: list[dict], rng: np.random.Generator, n: int, rate: int,
                  tries: int = 8) -> np.ndarray | None:
    """A segment of ``n`` samples of one of the group's files, loud enough to score (the loudest of a few tries)."""
    best, best_rms = None, 0.0
    for _ in range(tries):
        row = members[int(rng.integers(len(members)))]
        path = Path(root) / row["file"]
        info = audio_io.probe(path)
        start = int(rng.integers(0, max(1, info.frames - n)))
        segment = audio_io.read_resampled(path, info.sample_rate, rate, start, n)
        if len(segment) < n:
            segment = np.pad(segment, (0, n - len(segment)))
        level = rms(segment)
        if level > best_rms:
            best, best_rms = segment, level
        if level > 10 ** (-40 / 20) and np.mean(np.abs(segment) > 1e-4) > 0.6:  # mostly sounding, not a gap
            break
    return best if best_rms > 1e-4 else None


def silent_clean_rms(experiment: str | None = None, overrides=()) -> float:
    """The clean RMS below which a clip is left out of SI-SDR/SNR: the experiment's metrics.silent_clean_rms."""
    return float(C.compose(experiment or DEFAULT_EXPERIMENT, list(overrides)).metrics.silent_clean_rms)


def paired_test_set(folder: Path, sample_rate: int, clips: int | None,
                    silent_rms: float) -> tuple[list[dict], int, list[dict]]:
    """DIR/noisy + DIR/clean, whole files, at ``sample_rate`` (the first ``clips`` usable pairs), and the
    pairs skipped on the way, each {"file", "reason"}: a pair that cannot be scored is left out, not fatal."""
    if not Path(folder).is_dir():  # name the folder given, not the noisy/ inside it
        raise FileNotFoundError(f"{folder}: no such folder" if not Path(folder).exists() else f"{folder}: not a folder")
    noisy_dir, clean_dir = folder / "noisy", folder / "clean"
    noisy = {p.relative_to(noisy_dir).as_posix(): p for p in audio_io.find_audio_files(noisy_dir)}
    clean = {p.relative_to(clean_dir).as_posix(): p for p in audio_io.find_audio_files(clean_dir)}
    if not noisy:
        raise FileNotFoundError(f"{noisy_dir}: no audio files")
    test_clips, skipped = [], []
    for name in sorted(noisy.keys() | clean.keys()):
        if clips is not None and len(test_clips) >= clips:
            break
        if name not in clean:
            reason = f"noisy/{name} has no clean partner (no clean/{name})"
        elif name not in noisy:
            reason = f"clean/{name} has no noisy partner (no noisy/{name})"
        else:
            try:
                test_clips.append(paired_clip(name, noisy[name], clean[name], sample_rate, silent_rms))
                continue
            except audio_io.AudioFileError as exc:
                where = Path(exc.path)
                reason = f"{where.relative_to(folder) if where.is_relative_to(folder) else where}: {exc.reason}"
        skipped.append({"file": name, "reason": " ".join(reason.split())})  # one line
        log.warning("skipped %s", skipped[-1]["reason"])
    return test_clips, sample_rate, skipped


def paired_clip(name: str, noisy: Path, clean: Path, sample_rate: int, silent_rms: float) -> dict:
    """One whole pair at ``sample_rate``; AudioFileError (naming the file) if it cannot be scored: unreadable,
    sample rates or lengths that differ, NaN/Inf samples, or a clean reference below ``silent_rms``."""
    PairedFolderDataset._check_pair(noisy, clean)  # the corpus rule: same rate, same length
    audio = {}
    for side, path in (("noisy", noisy), ("clean", clean)):
        samples, rate = audio_io.read(path, allow_silence=True)  # NaN/Inf raise here
        audio[side] = audio_io.resample(audio_io.to_mono(samples), rate, sample_rate).astype(np.float32)
    if rms(audio["clean"]) < silent_rms:
        raise audio_io.AudioFileError(clean, f"silent clean reference (RMS {rms(audio['clean']):.1e} < "
                                             f"{silent_rms:g}): nothing to score against")
    n = min(len(audio["noisy"]), len(audio["clean"]))
    x, s = audio["noisy"][:n], audio["clean"][:n]
    top = name.split("/")[0] if "/" in name else None  # noisy/music/..., noisy/speech/...: per content
    snr_db = float(10 * np.log10((rms(s) ** 2 + 1e-12) / (rms(x - s) ** 2 + 1e-12)))
    return {"name": name, "noisy": x, "clean": s, "snr_db": snr_db,
            "noise_types": ["paired"], "content": top if top in CONTENTS else "paired"}


def _clip(example: dict, name: str) -> dict:
    return {"name": name, "noisy": example["noisy"].numpy().reshape(-1), "clean": example["clean"].numpy().reshape(-1),
            "snr_db": float(example["snr_db"]), "noise_types": example["noise_type"].split("+"),
            "content": example.get("content")}


# ----------------------------------------------------------------------------- systems
def run_system(process, clips: list[dict], sample_rate: int, name: str = "") -> tuple[list[np.ndarray], float]:
    """Outputs for every clip and the real-time factor (compute seconds per audio second)."""
    outputs, seconds = [], 0.0
    for clip in tqdm(clips, desc=name or None, unit="clip", leave=False, disable=None):  # bar on a terminal only
        start = time.perf_counter()
        outputs.append(np.asarray(process(clip["noisy"], sample_rate), dtype=np.float32))
        seconds += time.perf_counter() - start
    audio = sum(len(c["noisy"]) for c in clips) / sample_rate
    return outputs, seconds / audio


def checkpoint_name(path: Path) -> str:
    run = path.parent.parent
    return f"{run.parent.name}/{run.name}" if path.parent.name == "checkpoints" else path.stem


def model_process(checkpoint: Path, device: str = "cpu", guard: bool = True):
    """(process, the model's sample rate): the checkpoint restoring whole clips on ``device`` (as denoise does:
    with the do-no-harm guard unless ``guard`` is False)."""
    restorer = Restorer(load_model(checkpoint, resolve_device(device)), guard=guard)
    return (lambda audio, rate: restorer(audio[:, None], rate)[:, 0]), restorer.model_rate


# ----------------------------------------------------------------------------- scoring
def _perceptual(job: tuple[np.ndarray, np.ndarray, int, bool, bool]) -> dict:
    """``score_signal`` of one (clean, estimate, rate, speech, visqol) job (a picklable pool task)."""
    return score_signal(*job)


def perceptual_scores(jobs: list[tuple[np.ndarray, np.ndarray, int, bool, bool]], workers: int) -> list[dict]:
    """``_perceptual`` of every (clean, estimate, rate, speech, visqol) job, in spawned worker processes."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context) as pool:
        return list(tqdm(pool.map(_perceptual, jobs, chunksize=4), total=len(jobs), desc="PESQ/STOI/ViSQOL",
                         unit="clip", leave=False, disable=None))


def score(clips: list[dict], outputs: dict[str, list[np.ndarray]], sample_rate: int, workers: int,
          silent_rms: float, visqol_clips: int = 0) -> dict:
    """{system: [per-clip dict of metrics]}; PESQ/STOI (speech clips) and ViSQOL (the first ``visqol_clips``)
    computed in worker processes."""
    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]

    scores: dict[str, list[dict]] = {}
    jobs, keys = [], []
    for system, estimates in outputs.items():
        scores[system] = []
        for i, (clip, estimate) in enumerate(zip(clips, estimates, strict=True)):
            values, _ = waveform_scores(t(estimate), t(clip["noisy"]), t(clip["clean"]), silent_rms=silent_rms,
                                        sample_rate=sample_rate)
            scores[system].append({k: float(v[0]) for k, v in values.items()})
            jobs.append((clip["clean"], estimate, sample_rate, speech_content(clip["content"]), i < visqol_clips))
            keys.append((system, i))
    failures = defaultdict(lambda: defaultdict(int))
    for (system, i), result in zip(keys, perceptual_scores(jobs, workers), strict=True):
        scores[system][i].update({k: result[k] for k in ("pesq", "stoi", "visqol")})
        for name in ("pesq", "stoi", "visqol"):
            failures[system][name] += result[f"{name}_error"] is not None
    for system, per_clip in scores.items():
        for i, row in enumerate(per_clip):
            for name in ("pesq", "stoi", "visqol"):
                row[f"{name}_i"] = row[name] - scores[NOISY][i][name]
        for name, count in failures[system].items():
            if count:
                log.warning("%s: %s failed on %d clip(s); left out of its means", system, name.upper(), count)
    return scores


def spot_check(checkpoint: Path, clips: int = 8, seconds: float = 3.0,
               experiment: str = "archive_fullband") -> dict[str, float]:
    """Mean SI-SDR gain (dB) and amplitude retention per content on the first ``clips`` clips of
    ``experiment``'s fixed test set: the quick re-check that a model card quotes and a test repeats."""
    test, rate = synthetic_test_set(clips, seconds, [], experiment)
    silent_rms = silent_clean_rms(experiment)
    process, _ = model_process(checkpoint, guard=False)  # the model's own figures, which its card quotes
    outputs, _ = run_system(process, test, rate)
    result = {}
    for content in sorted({c["content"] for c in test}):
        rows = []
        for clip, estimate in zip(test, outputs, strict=True):
            if clip["content"] == content:
                values, _ = waveform_scores(*(torch.from_numpy(np.asarray(x, np.float32))[None, None]
                                              for x in (estimate, clip["noisy"], clip["clean"])),
                                            silent_rms=silent_rms, sample_rate=rate)
                rows.append({k: float(v[0]) for k, v in values.items()})
        result[f"si_sdr_i/{content}"] = _mean(r["si_sdr_i"] for r in rows)
        result[f"amplitude_retention/{content}"] = _mean(r["amplitude_retention"] for r in rows)
        result[f"clips/{content}"] = float(len(rows))
    return result


def _mean(values) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def bucket_name(low: float, high: float) -> str:
    if low == -math.inf:
        return f"< {high:g} dB"
    if high == math.inf:
        return f">= {low:g} dB"
    return f"{low:g}-{high:g} dB"


def groups(clips: list[dict]) -> dict[str, list[int]]:
    """Clip indices per group: overall, per content, per noise type (clips containing it), per input-SNR bucket."""
    out = {"overall": list(range(len(clips)))}
    for content in sorted({c["content"] for c in clips} - set(UNLABELLED)):
        out[f"content: {content}"] = [i for i, c in enumerate(clips) if c["content"] == content]
    for kind in sorted({t for c in clips for t in c["noise_types"]}):
        out[f"noise: {kind}"] = [i for i, c in enumerate(clips) if kind in c["noise_types"]]
    for low, high in SNR_BUCKETS:
        members = [i for i, c in enumerate(clips) if low <= c["snr_db"] < high]
        if members:
            out[f"input SNR {bucket_name(low, high)}"] = members
    return out


def summarise(scores: dict, clips: list[dict], rtf: dict[str, float]) -> list[dict]:
    rows = []
    for group, members in groups(clips).items():
        for system, per_clip in scores.items():
            row = {"group": group, "system": system, "clips": len(members)}
            for column in COLUMNS:
                row[column] = rtf[system] if column == "rtf" else _mean(per_clip[i][column] for i in members)
            rows.append(row)
    return rows


def clean_input_scores(clips: list[dict], systems, sample_rate: int) -> list[dict]:
    """Each system fed the *clean* clips: a restorer must leave clean audio alone. Per system and content,
    the median and 10th-percentile SI-SDR of its output against its input, and the mean amplitude retention."""
    from lightning_app.metrics import functional as MF

    rows = []
    for name, process in systems:
        outputs, _ = run_system(process, [dict(c, noisy=c["clean"]) for c in clips], sample_rate)
        per_clip = []
        for clip, out in zip(clips, outputs, strict=True):
            est, ref = torch.from_numpy(out)[None], torch.from_numpy(clip["clean"])[None]
            per_clip.append((clip["content"], float(MF.si_sdr(est, ref)[0]), float(MF.amplitude_retention(est, ref)[0])))
        contents = sorted({c for c, _, _ in per_clip} - set(UNLABELLED))
        for group in ["overall", *contents]:
            members = [(q, r) for c, q, r in per_clip if group in ("overall", c)]
            quality = np.array([q for q, _ in members])
            rows.append({"system": name, "group": group, "clips": len(members), "median_si_sdr": float(np.median(quality)),
                         "p10_si_sdr": float(np.percentile(quality, 10)), "amplitude_retention": _mean(r for _, r in members)})
        log.info("ran %s on the clean clips (median SI-SDR %.1f dB)", name, rows[-1 - len(contents)]["median_si_sdr"])
    return rows


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
    heads = [f"{n[len(prefix):]} ({counts[n]})" for n in names]
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
    return ["## Skipped", "", f"{len(skipped)} of {len(skipped) + evaluated} pairs could not be scored and are left "
            "out of every table (also in skipped.csv):", "",
            *tables.markdown(["file", "reason"], [[s["file"], s["reason"].replace("|", "/")] for s in skipped]), ""]


def write_reports(rows: list[dict], output_dir: Path, description: str, plots: list[str], notes: list[str] = (),
                  clean_input: list[dict] = (), skipped: list[dict] = (), evaluated: int = 0) -> str:
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "report.csv", ["group", "system", "clips", *COLUMNS], rows)
    write_csv(output_dir / "skipped.csv", ["file", "reason"], list(skipped))
    overall = [r for r in rows if r["group"] == "overall"]
    text = [f"# Evaluation: {description}", "", "## Overall", "", *markdown_table(overall, COLUMNS), "",
            "`rtf`: seconds of compute per second of audio on this machine. `*_i`: gain over the noisy input "
            "(`lsd_i` = input LSD - output LSD, so positive is better there too).", *(x for n in notes for x in ("", n)), "",
            *skipped_section(skipped, evaluated)]
    if any(r["group"].startswith("content: ") for r in rows):
        for title, metric in (("SI-SDR improvement (dB) by content", "si_sdr_i"),
                              ("Amplitude retention by content", "amplitude_retention"),
                              ("ViSQOL (MOS-LQO) by content", "visqol"), ("LSD (dB) by content", "lsd")):
            text += [f"## {title}", "", *pivot(rows, "content: ", metric), ""]
    if clean_input:
        text += ["## Clean input: does it leave clean audio alone?", "",
                 "Each system restores the clean clips; SI-SDR of its output against them (higher is better; "
                 "a restorer should stay above 25 dB).", "",
                 *markdown_table([{**r, "system": f"{r['system']} ({r['group']})"} for r in clean_input],
                                 ("clips", "median_si_sdr", "p10_si_sdr", "amplitude_retention")), ""]
    for title, prefix, metric in (("SI-SDR improvement (dB) by noise type (clips containing it)", "noise: ", "si_sdr_i"),
                                  ("PESQ by noise type", "noise: ", "pesq"),
                                  ("SI-SDR improvement (dB) by input SNR", "input SNR ", "si_sdr_i"),
                                  ("PESQ by input SNR", "input SNR ", "pesq"),
                                  ("Amplitude retention by input SNR", "input SNR ", "amplitude_retention")):
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


def write_plots(rows: list[dict], clips: list[dict], outputs: dict[str, list[np.ndarray]], sample_rate: int,
                output_dir: Path, panel_systems: list[str], panel_clips: int = 3, description: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    buckets = [r for r in rows if r["group"].startswith("input SNR ")]
    groups_ = list(dict.fromkeys(r["group"] for r in buckets))
    counts = {r["group"]: r["clips"] for r in buckets}
    labels = [f"{g[len('input SNR '):]}\n({counts[g]} clips)" for g in groups_]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    styles = system_styles(systems)
    subtitle = f"\n{description}" if description else ""
    for metric, title in (("si_sdr_i", "SI-SDR improvement over the input (dB)"),
                          ("pesq", "PESQ, wideband (speech clips; MOS 1–4.5)")):
        fig, ax = plt.subplots(figsize=(10.5, 4.8))
        for system in dict.fromkeys(r["system"] for r in buckets):
            values = {r["group"]: r[metric] for r in buckets if r["system"] == system}
            ax.plot(range(len(groups_)), [values.get(g, math.nan) for g in groups_], marker="o", label=system,
                    **styles[system])
        ax.set_xticks(range(len(groups_)), labels)
        ax.set_xlabel("input SNR (dB)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} by input SNR{subtitle}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside, never over points
        fig.tight_layout()
        names.append(f"{metric}_vs_input_snr.png")
        fig.savefig(output_dir / names[-1], dpi=110)
        plt.close(fig)

    overall = [r for r in rows if r["group"] == "overall"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(overall) + 1.6))
    ax.barh([r["system"] for r in overall], [r["amplitude_retention"] for r in overall],
            color=[styles[r["system"]]["color"] for r in overall])
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
    tracks = {s: [c["clean"] for c in shown] if s == "clean" else outputs[s][:len(shown)] for s in columns}
    names.append("spectrograms.png")
    spectrogram_panel(tracks, [c["name"] for c in shown], sample_rate, output_dir / names[-1])
    return names


def spectrogram_panel(tracks: dict[str, list[np.ndarray]], row_labels: list[str], sample_rate: int, path: Path,
                      titles_fontsize: int = 7) -> None:
    """One column per system, one row per clip; each clip's spectrograms on one dB scale (spectrograms.figure)."""
    examples = [{system: np.asarray(tracks[system][row], dtype=np.float32) for system in tracks}
                for row in range(len(row_labels))]
    titles = {system: textwrap.fill(system, 34) for system in tracks}
    fig, _ = spectrograms.figure(examples, sample_rate, titles=titles, row_labels=row_labels,
                                 width=max(8.0, 2.8 * len(tracks)), row_height=2.6, dpi=100, title_size=titles_fontsize + 1)
    fig.savefig(path, dpi=fig.dpi)


# ----------------------------------------------------------------------------- reconstruction chains
CHAIN_COLUMNS = ("snr", "si_sdr", "waveform_correlation", "spectral_correlation", "pesq", "stoi", "rtf")


def evaluate_chains(output_dir: Path, chains: list[tuple[str, Chain]], data: Path | None = None,
                    clips: int | None = None, seconds: float = 3.0, workers: int = 2, panel_clips: int = 2) -> dict:
    """Each chain, ``(name, fn(audio, sample_rate) -> audio)``, reconstructs the *clean* clips and is
    scored against them with the model metrics. Writes chains.md, chains.csv and chains_spectrograms.png."""
    from lightning_app.metrics import functional as MF

    skipped = []
    if data is not None:
        # the chains are the research's speech chains: at the default experiment's rate
        test_clips, rate, skipped = paired_test_set(Path(data), C.compose(DEFAULT_EXPERIMENT).data.sample_rate, clips,
                                                    silent_clean_rms())
        if not test_clips:
            raise FileNotFoundError(f"nothing to reconstruct in {data}: all {len(skipped)} pairs skipped: "
                                    + "; ".join(s["reason"] for s in skipped[:5]))
    else:
        test_clips, rate = synthetic_test_set(clips or 48, seconds, [])
    rows, jobs, keys = [], [], []
    shown = test_clips[:panel_clips]
    panel = {"clean": [c["clean"] for c in shown]}
    for name, chain in chains:
        outputs, rtf = run_system(chain, [dict(c, noisy=c["clean"]) for c in test_clips], rate)
        panel[name] = outputs[:len(shown)]
        per_clip = []
        for i, (clip, out) in enumerate(zip(test_clips, outputs, strict=True)):
            est, ref = torch.from_numpy(out)[None], torch.from_numpy(clip["clean"])[None]
            per_clip.append({"snr": float(MF.snr(est, ref)[0]), "si_sdr": float(MF.si_sdr(est, ref)[0]),
                             "waveform_correlation": float(MF.pearson(est, ref)[0]),
                             "spectral_correlation": float(MF.spectral_correlation(est, ref)[0])})
            jobs.append((clip["clean"], out, rate, speech_content(clip["content"]), False))
            keys.append((len(rows), i))
        rows.append({"system": name, "clips": len(test_clips), "rtf": rtf, "_per_clip": per_clip})
        log.info("ran chain %s (real-time factor %.4f)", name, rtf)
    for (row, i), result in zip(keys, perceptual_scores(jobs, workers), strict=True):
        rows[row]["_per_clip"][i].update(pesq=result["pesq"], stoi=result["stoi"])
    for row in rows:
        per_clip = row.pop("_per_clip")
        for column in CHAIN_COLUMNS[:-1]:
            row[column] = _mean(c[column] for c in per_clip)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "chains.csv", ["system", "clips", *CHAIN_COLUMNS], rows)
    source = f"paired corpus {data}" if data is not None else f"built-in synthetic test set, clean clips of {seconds:g} s"
    spectrogram_panel(panel, [c["name"] for c in shown], rate, output_dir / "chains_spectrograms.png", titles_fontsize=6)
    report = "\n".join([f"# Reconstruction chains: {source} ({len(test_clips)} clips)", "",
                         "Each chain reconstructs the clean signal; scores are against it.", "",
                         *markdown_table(rows, CHAIN_COLUMNS), "",
                         "![spectrograms of the first clips](chains_spectrograms.png)", "",
                         *skipped_section(skipped, len(test_clips))]) + "\n"
    (output_dir / "chains.md").write_text(report)
    return {"rows": rows, "report": report, "outputs": panel, "sample_rate": rate, "skipped": skipped,
            "evaluated": len(test_clips)}


# ----------------------------------------------------------------------------- entry point
def evaluate(checkpoints: list[Path], output_dir: Path, data: Path | None = None, clips: int | None = None,
             seconds: float = 3.0, mixes=(1.0, 0.5, 0.3), workers: int = 2, with_baselines: bool = True,
             overrides: list[str] = (), experiment: str | None = None, visqol_clips: int = 16,
             device: str = "cpu", ablation: bool = False, real_corpus: Path | None = None,
             real_clips: int = 36) -> dict:
    """Score every system and write the reports; returns {"rows", "report", "plots"}. The checkpoints run
    on ``device`` (cpu, cuda, auto); the baselines and the scoring on the CPU."""
    models = [(checkpoint_name(p), *model_process(p, device)) for p in checkpoints]  # fail early on a bad checkpoint
    systems = [(name, process) for name, process, _ in models]
    if ablation:  # the guard's effect: each model without it, and the guard over a model that removes everything
        systems += [(f"{checkpoint_name(p)} (no guard)", model_process(p, device, guard=False)[0]) for p in checkpoints]
        if models:
            systems.append(("guard alone", guard_alone_process(models[0][2])))
    if data is not None:
        if models and experiment is None:
            rate = models[0][2]  # the rate the (first) model works at
        else:
            rate = C.compose(experiment or DEFAULT_EXPERIMENT, list(overrides)).data.sample_rate
        test_clips, rate, skipped = paired_test_set(Path(data), rate, clips, silent_clean_rms(experiment, overrides))
        left_out = f", {len(skipped)} skipped" if skipped else ""
        description = f"paired corpus {data} at {rate} Hz ({len(test_clips)} files{left_out})"
        if not test_clips:  # the report still says why, pair by pair
            output_dir.mkdir(parents=True, exist_ok=True)
            write_csv(output_dir / "report.csv", ["group", "system", "clips", *COLUMNS], [])
            write_csv(output_dir / "skipped.csv", ["file", "reason"], skipped)
            (output_dir / "report.md").write_text("\n".join([f"# Evaluation: {description}", "",
                                                             *skipped_section(skipped, 0)]) + "\n")
            raise FileNotFoundError(f"nothing evaluated in {data}: all {len(skipped)} pairs skipped "
                                    f"(see {output_dir / 'report.md'}#skipped)")
    else:
        experiment = experiment or DEFAULT_EXPERIMENT
        test_clips, rate = synthetic_test_set(clips or 48, seconds, list(overrides), experiment)
        skipped = []
        description = f"built-in synthetic test set of {experiment} ({len(test_clips)} clips of {seconds:g} s at {rate} Hz)"
    missing = visqol_missing() if visqol_clips else None
    if missing:
        log.warning("ViSQOL skipped: %s", missing)
    visqol_clips = 0 if missing else min(visqol_clips, len(test_clips))
    outputs, rtf = {NOISY: [c["noisy"] for c in test_clips]}, {NOISY: 0.0}
    baselines_ = list(baselines().items()) if with_baselines else []
    processes = [*baselines_, *systems]  # built once: DFN3 loads a library
    for name, process in processes:
        estimates, rtf[name] = run_system(process, test_clips, rate, name)
        log.info("ran %s on %d clips (real-time factor %.4f)", name, len(test_clips), rtf[name])
        if name in dict(systems):
            # The mix is linear, so each blend comes from the one model pass (and costs what it costs).
            for mix in mixes:
                label = f"{name} (mix {mix:g})"
                outputs[label] = [mix * e + (1 - mix) * c["noisy"] for e, c in zip(estimates, test_clips, strict=True)]
                rtf[label] = rtf[name]
            del rtf[name]
        else:
            outputs[name] = estimates
    scores = score(test_clips, outputs, rate, workers, silent_clean_rms(experiment, overrides), visqol_clips)
    rows = summarise(scores, test_clips, rtf)
    untouched = clean_input_scores(test_clips, processes, rate)
    output_dir.mkdir(parents=True, exist_ok=True)
    panel = [s for s in outputs if "(mix" not in s or "(mix 1)" in s]
    plots = write_plots(rows, test_clips, outputs, rate, output_dir, panel, description=description)
    speech = sum(speech_content(c["content"]) for c in test_clips)
    scope = f"the first {visqol_clips} clips" if visqol_clips else f"not computed: {missing or '--visqol-clips 0'}"
    notes = [f"PESQ and STOI are speech measures: computed on the speech clips only ({speech} of {len(test_clips)} "
             f"clips). ViSQOL (v3 audio mode, MOS-LQO 1-5, music and speech; {scope}) is level-blind: it rescales "
             f"the output to the clean level before comparing, so read it next to amplitude retention, never instead. "
             f"LSD: log-spectral distance in dB (lower is better)."]
    report = write_reports(rows, output_dir, description, plots, notes, untouched, skipped, len(test_clips))
    real = None
    if real_corpus is not None:
        real = evaluate_real(real_corpus, [(n, p) for n, p in processes if n in dict(systems) or n in dict(baselines_)],
                             output_dir, experiment or DEFAULT_EXPERIMENT, real_clips)
        report += "\n" + real["report"]
        (output_dir / "report.md").write_text(report)
    return {"rows": rows, "report": report, "plots": plots, "clean_input": untouched, "skipped": skipped,
            "evaluated": len(test_clips), "real": real}


def guard_alone_process(rate: int):
    """The guard over a model that removes everything, restoring whole clips (the guard's own share)."""
    restorer = Restorer(guard_alone(rate))
    return lambda audio, sample_rate: restorer(audio[:, None], sample_rate)[:, 0]


REAL_COLUMNS = ("clips", "si_sdr_i", "worst_si_sdr_i", "worse_than_input", "amplitude_retention")
REAL_LABELS = {"si_sdr_i": "mean SI-SDR gain (dB)", "worst_si_sdr_i": "worst clip (dB)",
               "worse_than_input": "clips worse than input by > 0.5 dB", "amplitude_retention": "retention"}


def evaluate_real(root: Path, systems: list, output_dir: Path, experiment: str, clips_per_content: int = 36,
                  seconds: float = 6.0) -> dict:
    """The real-recordings test set (``real_test_set`` on the corpus's test split): every system restores each
    degraded clip and each clean clip; per content and per 5-dB input-SNR bucket the mean SI-SDR gain, the worst
    clip, the clips made worse than their input, retention; and the clean-input table. Writes real.md, real.csv."""
    clips, rate = real_test_set(Path(root), "test", clips_per_content, seconds, experiment)
    outputs = {NOISY: [c["noisy"] for c in clips]}
    for name, process in systems:
        outputs[name], _ = run_system(process, clips, rate, f"{name} (real)")
        log.info("ran %s on the real test set (%d clips)", name, len(clips))

    def t(signals):  # the clips share one length: one (clips, 1, samples) batch
        return torch.from_numpy(np.stack([np.asarray(x, dtype=np.float32) for x in signals]))[:, None]

    groups_ = {}
    for content in sorted({c["content"] for c in clips}):
        members = [i for i, c in enumerate(clips) if c["content"] == content]
        groups_[content] = members
        for low, high in REAL_SNR_BUCKETS:
            groups_[f"{content}, input SNR {low:g}-{high:g} dB"] = [i for i in members if low <= clips[i]["snr_db"] < high]
    rows = []
    noisy, clean = t(c["noisy"] for c in clips), t(c["clean"] for c in clips)
    silent_rms = silent_clean_rms(experiment)
    for name, estimates in outputs.items():
        values, _ = waveform_scores(t(estimates), noisy, clean, silent_rms=silent_rms, sample_rate=rate)
        gain, kept = values["si_sdr_i"].tolist(), values["amplitude_retention"].tolist()
        for group, members in groups_.items():
            if members:
                rows.append({"system": name, "group": group, "clips": len(members),
                             "si_sdr_i": _mean(gain[i] for i in members), "worst_si_sdr_i": min(gain[i] for i in members),
                             "worse_than_input": sum(gain[i] < -0.5 for i in members),
                             "amplitude_retention": _mean(kept[i] for i in members)})
    clean_rows = clean_input_scores(clips, systems, rate)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_csv(output_dir / "real.csv", ["group", "system", *REAL_COLUMNS], rows)
    labels = {**LABELS, **REAL_LABELS}
    packages = sorted({c["origin"] for c in clips})
    text = [f"# Real recordings: the corpus's test split ({Path(root)})", "",
            f"{len(clips)} clips of {seconds:g} s at {rate} Hz from {', '.join(packages)}, degraded by the "
            f"{experiment} noise generators at input SNRs spread over {REAL_SNR_DB[0]:g}-{REAL_SNR_DB[1]:g} dB "
            "(waveform measures only; PESQ/STOI/ViSQOL are in the procedural report above).", ""]
    for group in groups_:
        selected = [r for r in rows if r["group"] == group]
        if selected:
            text += [f"## {group}", "", *tables.records(selected, REAL_COLUMNS, "system", labels=labels), ""]
    text += ["## Clean input (real): does it leave clean recordings alone?", "",
             "SI-SDR of each system's output against the clean clip it was given (a restorer should stay above 25 dB).",
             "", *tables.records([{**r, "system": f"{r['system']} ({r['group']})"} for r in clean_rows],
                                 ("clips", "median_si_sdr", "p10_si_sdr"), "system", labels=labels), ""]
    report = "\n".join(text) + "\n"
    (output_dir / "real.md").write_text(report)
    return {"rows": rows, "clean_input": clean_rows, "report": report, "clips": len(clips)}


def reference_free(folder: Path) -> bool:
    """A --data folder of noisy files alone: no clean/ references beside them."""
    return folder.is_dir() and not (folder / "clean").is_dir()


def evaluate_folder(checkpoints: list[Path], folder: Path, output_dir: Path, mix: float = 1.0,
                    clips: int | None = None) -> dict:
    """Restore every file of ``folder`` (its noisy/ subfolder if it has one) with each checkpoint (none: the
    bundled model) into ``output_dir/restored/<checkpoint>/`` and write the listening report there;
    {"page", "rows"} (rows: report.csv's). A file that cannot be restored is reported with the reason."""
    from lightning_app.listening_report import TABLE, ReportEntry, write_listening_report

    root = folder / "noisy" if (folder / "noisy").is_dir() else folder
    files = audio_io.find_audio_files(root)[:clips]
    if not files:
        raise FileNotFoundError(f"{root}: no audio files (.wav, .flac, .ogg)")
    if not checkpoints:
        try:
            checkpoints = [bundled_model()]
        except ValueError as exc:  # CheckpointError: not in this checkout
            raise ValueError(f"{str(exc).split(';')[0]}; name the checkpoints to restore with: python -m "
                             f"lightning_app.evaluate CKPT ... --data {folder} (make evaluate CKPTS=...)") from None
        log.info("no checkpoint given: restoring with the bundled model %s", checkpoints[0])
    entries = []
    for checkpoint in checkpoints:
        name = checkpoint_name(checkpoint)
        restorer = Restorer(load_model(checkpoint), mix=mix)
        for src in files:
            rel = src.relative_to(root)
            dst = output_dir / "restored" / name / rel
            share = None
            try:
                restore_file(restorer, src, dst, residual_path(dst))
                share = restorer.guard_share()
            except audio_io.AudioFileError as exc:  # the report names the input's fault; others are logged here
                log.warning("not restored: %s", exc)
            top = rel.parts[0] if len(rel.parts) > 1 else None
            label = rel.as_posix() if len(checkpoints) == 1 else f"{rel.as_posix()} · {name}"
            entries.append(ReportEntry(src, dst, residual_path(dst), top if top in CONTENTS else None, label, share))
        log.info("restored %d file(s) with %s (mix %g)", len(files), name, mix)
    names = ", ".join(checkpoint_name(c) for c in checkpoints)
    page = write_listening_report(entries, output_dir, title=f"Listening report: {root} restored by {names}")
    with open(output_dir / TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    return {"page": page, "rows": rows}
