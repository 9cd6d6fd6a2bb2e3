"""Running systems over test clips and scoring them: per clip, per content and SNR bucket, and clean input."""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lightning_app.evaluation.test_sets import silent_clean_rms, synthetic_test_set
from lightning_app.metrics.perceptual import UNLABELLED, score_signal, speech_content
from lightning_app.metrics.quality import SPEECH_REMOVED_LABEL, waveform_scores
from lightning_app.restoring.engine import Restorer
from lightning_app.restoring.guard import guard_alone
from lightning_app.restoring.networks import open_network
from lightning_app.restoring.torch_network import resolve_device
from lightning_app.systems.checkpoints import load_model

log = logging.getLogger(__name__)
NOISY = "noisy input"

COLUMNS = (
    "si_sdr",
    "si_sdr_i",
    "snr",
    "snr_i",
    "pesq",
    "pesq_i",
    "stoi",
    "stoi_i",
    "visqol",
    "visqol_i",
    "lsd",
    "lsd_i",
    "amplitude_retention",
    "speech_removed",
    "spectral_correlation",
    "rtf",
)

#: units in the report's table headers (report.csv keeps the bare names)
UNITS = {
    "si_sdr": "dB",
    "si_sdr_i": "dB",
    "snr": "dB",
    "snr_i": "dB",
    "pesq": "MOS 1–4.5",
    "pesq_i": "MOS",
    "stoi": "0–1",
    "stoi_i": "",
    "visqol": "MOS 1–5",
    "visqol_i": "MOS",
    "lsd": "dB, lower is better",
    "lsd_i": "dB",
    "amplitude_retention": "out/clean RMS",
    "speech_removed": "0–1",
    "spectral_correlation": "0–1",
    "rtf": "s per s of audio",
    "median_si_sdr": "dB",
    "p10_si_sdr": "dB",
}

LABELS = {name: f"{name} ({unit})" if unit else name for name, unit in UNITS.items()}
LABELS["speech_removed"] = f"{SPEECH_REMOVED_LABEL} (0–1, 0 = only noise removed)"

#: the measures computed in worker processes, on some clips only (PESQ/STOI: speech; ViSQOL: the first N);
#: report.csv counts the clips behind each mean in ``<measure>_clips``
PERCEPTUAL = ("pesq", "stoi", "visqol")
PERCEPTUAL_COLUMNS = tuple(c for m in PERCEPTUAL for c in (m, f"{m}_i"))
COUNT_COLUMNS = tuple(f"{m}_clips" for m in PERCEPTUAL)

SNR_BUCKETS = ((-math.inf, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, math.inf))


# ----------------------------------------------------------------------------- systems
def run_system(
    process, clips: list[dict], sample_rate: int, name: str = ""
) -> tuple[list[np.ndarray], float]:
    """Outputs for every clip and the real-time factor (compute seconds per audio second)."""
    outputs, seconds = [], 0.0
    for clip in tqdm(
        clips, desc=name or None, unit="clip", leave=False, disable=None
    ):  # bar on a terminal only
        start = time.perf_counter()
        outputs.append(np.asarray(process(clip["noisy"], sample_rate), dtype=np.float32))
        seconds += time.perf_counter() - start
    audio = sum(len(c["noisy"]) for c in clips) / sample_rate
    return outputs, seconds / audio


def checkpoint_name(path: Path) -> str:
    """A run's checkpoint by its run (``experiment/version_N``), another by its stem; an export keeps its
    suffix, so that a checkpoint and its export scored side by side stay apart."""
    run = path.parent.parent
    if path.suffix.lower() == ".onnx":
        return path.name
    return f"{run.parent.name}/{run.name}" if path.parent.name == "checkpoints" else path.stem


def restoring_model(checkpoint: Path, device: str = "cpu"):
    """What restores with ``checkpoint``: an export (.onnx) on ONNX Runtime, as denoise runs it on a CPU, or
    a checkpoint's network in torch on ``device``."""
    if Path(checkpoint).suffix.lower() == ".onnx":
        return open_network(checkpoint, engine="onnx", device="cpu")
    return load_model(checkpoint, resolve_device(device))


def model_process(checkpoint: Path, device: str = "cpu", guard: bool = True):
    """(process, the model's sample rate): the checkpoint or export restoring whole clips (as denoise does:
    with the do-no-harm guard unless ``guard`` is False)."""
    restorer = Restorer(restoring_model(checkpoint, device), guard=guard)
    return (lambda audio, rate: restorer(audio[:, None], rate)[:, 0]), restorer.model_rate


# ----------------------------------------------------------------------------- scoring
def _perceptual(job: tuple[np.ndarray, np.ndarray, int, bool, bool]) -> dict:
    """``score_signal`` of one (clean, estimate, rate, speech, visqol) job (a picklable pool task)."""
    return score_signal(*job)


def perceptual_scores(jobs: list[tuple[np.ndarray, np.ndarray, int, bool, bool]], workers: int) -> list[dict]:
    """``_perceptual`` of every (clean, estimate, rate, speech, visqol) job, in spawned worker processes (none
    when no job asks for a measure: then every result is NaN with no reason, at once)."""
    if not any(job[3] or job[4] for job in jobs):
        return [_perceptual(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context) as pool:
        return list(
            tqdm(
                pool.map(_perceptual, jobs, chunksize=4),
                total=len(jobs),
                desc="PESQ/STOI/ViSQOL",
                unit="clip",
                leave=False,
                disable=None,
            )
        )


def score(
    clips: list[dict],
    outputs: dict[str, list[np.ndarray]],
    sample_rate: int,
    workers: int,
    silent_rms: float,
    visqol_clips: int = 0,
) -> tuple[dict, dict]:
    """({system: [per-clip dict of metrics]}, failures); PESQ/STOI (speech clips) and ViSQOL (the first
    ``visqol_clips``) computed in worker processes. A clip a measure fails on is NaN, left out of its means,
    and counted: failures[measure] = {"asked": clips it was asked for, "failed": {system: {reason: count}}};
    one log line sums them up (the report lists them)."""

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, None]

    scores: dict[str, list[dict]] = {}
    jobs, keys = [], []
    for system, estimates in outputs.items():
        scores[system] = []
        for i, (clip, estimate) in enumerate(zip(clips, estimates, strict=True)):
            values, _ = waveform_scores(
                t(estimate),
                t(clip["noisy"]),
                t(clip["clean"]),
                silent_rms=silent_rms,
                sample_rate=sample_rate,
            )
            scores[system].append({k: float(v[0]) for k, v in values.items()})
            jobs.append(
                (clip["clean"], estimate, sample_rate, speech_content(clip["content"]), i < visqol_clips)
            )
            keys.append((system, i))
    speech = sum(speech_content(c["content"]) for c in clips)
    asked = {"pesq": speech, "stoi": speech, "visqol": min(visqol_clips, len(clips))}
    failures = {
        m: {"asked": asked[m], "systems": list(outputs), "failed": defaultdict(Counter)} for m in PERCEPTUAL
    }
    for (system, i), result in zip(keys, perceptual_scores(jobs, workers), strict=True):
        scores[system][i].update({k: result[k] for k in PERCEPTUAL})
        for name in PERCEPTUAL:
            if result[f"{name}_error"] is not None:
                failures[name]["failed"][system][_reason(result[f"{name}_error"])] += 1
    for per_clip in scores.values():
        for i, row in enumerate(per_clip):
            for name in PERCEPTUAL:
                row[f"{name}_i"] = row[name] - scores[NOISY][i][name]
    summary = failure_summary(failures)
    if summary:
        log.warning("%s; left out of their means (counted in report.md)", "; ".join(summary))
    return scores, failures


def _reason(error: str) -> str:
    """A failure's reason, short: its first line, without pesq's long explanations."""
    return error.splitlines()[0].split(". ")[0][:80]


def failed_clips(failure: dict) -> tuple[dict[str, int], Counter]:
    """Of one measure's ``failures`` entry: the clips each system lost to it (only systems that lost some),
    and its reasons counted over every system."""
    lost = {system: sum(reasons.values()) for system, reasons in failure["failed"].items() if reasons}
    reasons = Counter()
    for per_system in failure["failed"].values():
        reasons.update(per_system)
    return lost, reasons


def failure_summary(failures: dict) -> list[str]:
    """One phrase per measure that failed on some clips: "PESQ failed on 3 of 4 clips (reason)" (the most
    any system lost; "for every system" when they all lost the same clips)."""
    out = []
    for name, f in failures.items():
        lost, reasons = failed_clips(f)
        if not lost:
            continue
        worst = max(lost.values())
        why = "; ".join(reason for reason, _ in reasons.most_common(2))
        out.append(f"{name.upper()} failed on {worst} of {f['asked']} clips ({why})")
    return out


def spot_check(
    checkpoint: Path, clips: int = 8, seconds: float = 3.0, experiment: str = "archive_fullband"
) -> dict[str, float]:
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
                values, _ = waveform_scores(
                    *(
                        torch.from_numpy(np.asarray(x, np.float32))[None, None]
                        for x in (estimate, clip["noisy"], clip["clean"])
                    ),
                    silent_rms=silent_rms,
                    sample_rate=rate,
                )
                rows.append({k: float(v[0]) for k, v in values.items()})
        result[f"si_sdr_i/{content}"] = finite_mean(r["si_sdr_i"] for r in rows)
        result[f"amplitude_retention/{content}"] = finite_mean(r["amplitude_retention"] for r in rows)
        result[f"clips/{content}"] = float(len(rows))
    return result


def finite_mean(values) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def bucket_name(low: float, high: float) -> str:
    if low == -math.inf:
        return f"< {high:g} dB"
    if high == math.inf:
        return f">= {low:g} dB"
    return f"{low:g}-{high:g} dB"


def groups(clips: list[dict]) -> dict[str, list[int]]:
    """Clip indices per group: overall, per content, per noise type (clips containing it), per input-SNR
    bucket."""
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
                row[column] = (
                    rtf[system] if column == "rtf" else finite_mean(per_clip[i][column] for i in members)
                )
            for name in PERCEPTUAL_COLUMNS:  # the clips behind each perceptual mean
                row[f"{name}_clips"] = sum(math.isfinite(per_clip[i].get(name, math.nan)) for i in members)
            rows.append(row)
    return rows


def clean_input_scores(clips: list[dict], systems, sample_rate: int) -> list[dict]:
    """Each system fed the *clean* clips: a restorer must leave clean audio alone. Per system and content,
    the median and 10th-percentile SI-SDR of its output against its input, and the mean amplitude
    retention."""
    from lightning_app.metrics import functional as MF

    rows = []
    for name, process in systems:
        outputs, _ = run_system(process, [dict(c, noisy=c["clean"]) for c in clips], sample_rate)
        per_clip = []
        for clip, out in zip(clips, outputs, strict=True):
            est, ref = torch.from_numpy(out)[None], torch.from_numpy(clip["clean"])[None]
            per_clip.append(
                (clip["content"], float(MF.si_sdr(est, ref)[0]), float(MF.amplitude_retention(est, ref)[0]))
            )
        contents = sorted({c for c, _, _ in per_clip} - set(UNLABELLED))
        for group in ["overall", *contents]:
            members = [(q, r) for c, q, r in per_clip if group in ("overall", c)]
            quality = np.array([q for q, _ in members])
            rows.append(
                {
                    "system": name,
                    "group": group,
                    "clips": len(members),
                    "median_si_sdr": float(np.median(quality)),
                    "p10_si_sdr": float(np.percentile(quality, 10)),
                    "amplitude_retention": finite_mean(r for _, r in members),
                }
            )
        log.info(
            "ran %s on the clean clips (median SI-SDR %.1f dB)",
            name,
            rows[-1 - len(contents)]["median_si_sdr"],
        )
    return rows


def guard_alone_process(rate: int):
    """The guard over a model that removes everything, restoring whole clips (the guard's own share)."""
    restorer = Restorer(guard_alone(rate))
    return lambda audio, sample_rate: restorer(audio[:, None], sample_rate)[:, 0]
