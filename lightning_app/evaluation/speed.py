"""Speed measurements: data loading, training steps (fed and unfed), and restoring files (real-time
factor, peak memory).

Medians over repeats in one process; the command line ``lightning_app.bench`` prints them side by side.
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from lightning_app.restoring.engine import Restorer
from lightning_app.systems.checkpoints import for_inference


def _median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_data(datamodule, examples: int) -> dict:
    start = time.perf_counter()
    datamodule.setup("fit")
    fill = time.perf_counter() - start
    ds = datamodule.train_set
    keys = iter([(0, 0, 0, i) for i in range(10_000)])
    per_example = _median_time(lambda: ds[next(keys)], repeats=examples)
    return {
        "segments_per_s_per_worker": 1.0 / per_example,
        "bank_fill_s": fill,
        "segment_seconds": datamodule.segment_samples / datamodule.sample_rate,
    }


def _step_fn(system, device: torch.device, precision: str):
    opt = torch.optim.AdamW(system.parameters(), lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step(batch):
        with autocast:
            loss = system.shared_step(batch)[0]["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def bench_train_step(system, datamodule, device: torch.device, repeats: int, precision: str) -> dict:
    """Compute alone: one batch, already on the device, stepped repeatedly."""
    batch = _to(next(iter(datamodule.train_dataloader())), device)
    system = system.to(device).train()
    step = _step_fn(system, device, precision)
    seconds = _median_time(lambda: step(batch), repeats, warmup=2)
    n = batch["noisy"].shape[0]
    return {"train_step_s": seconds, "batch_size": n, "train_samples_per_s": n / seconds}


def bench_fed_training(system, datamodule, device: torch.device, steps: int, precision: str) -> dict:
    """Steps fed by the real DataLoader (its workers, pinned memory): does loading keep up?"""
    system = system.to(device).train()
    step = _step_fn(system, device, precision)
    datamodule.train_examples_per_epoch = max(
        datamodule.train_examples_per_epoch, (steps + 1) * datamodule.batch_size
    )
    loader = iter(datamodule.train_dataloader())
    step(_to(next(loader), device))  # worker start-up and warm-up are not timed
    start, samples = time.perf_counter(), 0
    for _ in range(steps):
        batch = _to(next(loader), device)
        step(batch)
        samples += batch["noisy"].shape[0]
    return {"fed_samples_per_s": samples / (time.perf_counter() - start)}


def write_test_recording(
    path: Path, seconds: float, rate: int, channels: int, block_seconds: float = 60.0
) -> None:
    """A long noisy tone recording, written block by block (the benchmark itself stays small)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=channels, subtype="PCM_16") as f:
        done = 0
        total = int(seconds * rate)
        while done < total:
            n = min(int(block_seconds * rate), total - done)
            t = (done + np.arange(n)) / rate
            tone = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
            f.write((tone[:, None] + 0.03 * rng.standard_normal((n, channels))).astype(np.float32))
            done += n


# Appended to a child's code: its own peak RSS (VmHWM, the peak of this program's memory, not ru_maxrss,
# which Linux carries over from the parent at fork and exec), before the interpreter exits (/usr/bin/time
# also counts the exit, where the CUDA build of torch reads pages of its libraries back in).
_REPORT_PEAK = """
import re, resource
try:
    peak = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("PEAK_KIB", peak)
sys.exit(status)
"""


def _child_peak_kib(code: str, argv: list[str]) -> tuple[int, str]:
    """(peak RSS in KiB, stdout) of ``python -c code argv...``; ``code`` sets ``status``, the exit status."""
    done = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\n{_REPORT_PEAK}", *argv],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout.split("PEAK_KIB")[1].split()[0]), done.stdout


def bench_restore_file(system, seconds: float, rate: int, channels: int, device: str) -> dict:
    """The real CLI on a generated file, in a child process: wall time, the CLI's own real-time factor
    (restoring only, without starting Python and loading), that process's peak RSS, and the peak of a
    child that only imports the CLI: the part of the peak that restoring does not control."""
    with tempfile.TemporaryDirectory(prefix="c2c-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / f"long_{rate}.wav"
        write_test_recording(src, seconds, rate, channels)
        ckpt = tmp / "model.ckpt"
        torch.save(
            {
                "state_dict": system.state_dict(),
                "hyper_parameters": dict(system.hparams),
                "system_kind": system.kind,
            },
            ckpt,
        )
        start = time.perf_counter()
        peak_kib, out = _child_peak_kib(
            "from lightning_app import denoise; status = denoise.main(sys.argv[1:])",
            [
                str(src),
                "--checkpoint",
                str(ckpt),
                "--output-dir",
                str(tmp / "out"),
                "--no-progress",
                "--device",
                device,
            ],
        )
        took = time.perf_counter() - start
        import_kib, _ = _child_peak_kib("import lightning_app.denoise; status = 0", [])
    restoring = re.search(r"real-time factor ([0-9.]+)", out)
    return {
        "rtf": took / seconds,
        "restore_rtf": float(restoring.group(1)) if restoring else math.nan,
        "peak_rss_mb": peak_kib / 1024,
        "import_rss_mb": import_kib / 1024,
    }


# Prepended to a child's code: prints the seconds from the process's start (the kernel's clock, so the
# interpreter's own start-up counts) to the first restored block written.
_FIRST_BLOCK_PROBE = """
import os
import lightning_app.data.audio_io as _io
def _since_process_start():
    started = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return float(open("/proc/uptime").read().split()[0]) - started
_write = _io.write_block
def _first_write(*args, **kwargs):
    if not _first_write.seen:
        _first_write.seen = True
        print("FIRST_BLOCK_S", _since_process_start(), flush=True)
    return _write(*args, **kwargs)
_first_write.seen = False
_io.write_block = _first_write
"""


def _si_sdr_of_files(reference: Path, estimate: Path, block: int = 1 << 20) -> float:
    """SI-SDR (dB) of one file against another of the same shape, over all channels, read block by block."""
    dot = ref_energy = est_energy = 0.0
    with sf.SoundFile(str(reference)) as a, sf.SoundFile(str(estimate)) as b:
        for x, y in zip(a.blocks(block, dtype="float64"), b.blocks(block, dtype="float64"), strict=True):
            dot += float(np.sum(x * y))
            ref_energy += float(np.sum(x * x))
            est_energy += float(np.sum(y * y))
    scale = dot / ref_energy
    target = scale**2 * ref_energy
    return 10 * math.log10(target / max(est_energy - 2 * scale * dot + target, 1e-30))


def bench_engines(
    seconds: float,
    rate: int = 44100,
    channels: int = 2,
    engines: tuple[str, ...] = ("onnx", "torch"),
    device: str = "cpu",
    deepfilternet: bool = True,
) -> dict:
    """The bundled model through the real CLI on one generated file, once per engine, each in a child
    process: wall time from the start of the process (real-time factor including start-up), the CLI's own
    real-time factor (restoring only), peak RSS, seconds to the first block written; the SI-SDR of the
    engines' outputs against each other; and DeepFilterNet3's C runtime streaming the same file."""
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="c2c-engines-") as tmp:
        tmp = Path(tmp)
        src = tmp / "in" / f"long_{rate}.wav"
        src.parent.mkdir()
        write_test_recording(src, seconds, rate, channels)
        for engine in engines:
            start = time.perf_counter()
            peak_kib, out = _child_peak_kib(
                _FIRST_BLOCK_PROBE + "from lightning_app import denoise; status = denoise.main(sys.argv[1:])",
                [str(src), "-o", str(tmp / engine), "--no-progress", "--engine", engine, "--device", device],
            )
            took = time.perf_counter() - start
            restoring = re.search(r"real-time factor ([0-9.]+)", out)
            results[engine] = {
                "rtf": took / seconds,
                "restore_rtf": float(restoring.group(1)) if restoring else math.nan,
                "peak_rss_mb": peak_kib / 1024,
                "first_block_s": float(out.split("FIRST_BLOCK_S")[1].split()[0]),
            }
        if len(engines) == 2:
            outputs = [tmp / engine / src.name for engine in engines]
            results["agreement_db"] = _si_sdr_of_files(*outputs)
        if deepfilternet:
            try:
                start = time.perf_counter()
                peak_kib, _ = _child_peak_kib(
                    "from lightning_app.evaluation.baselines import DeepFilterNet3, stream_file; "
                    "stream_file(DeepFilterNet3(), sys.argv[1], sys.argv[2]); status = 0",
                    [str(src), str(tmp / "deepfilternet3.wav")],
                )
                results["deepfilternet3"] = {
                    "rtf": (time.perf_counter() - start) / seconds,
                    "peak_rss_mb": peak_kib / 1024,
                }
            except subprocess.CalledProcessError as error:  # the optional extra is not installed
                lines = error.stderr.strip().splitlines()
                results["deepfilternet3"] = {"missing": lines[-1] if lines else "failed"}
    return results


def bench_restore(
    system, device: torch.device, seconds: float, inputs=((16000, 1), (44100, 2), (48000, 2))
) -> dict:
    """Real-time factor of the Restorer (level, resampling, chunks, high band) per (rate, channels) input."""
    system = for_inference(system, device)
    out = {}
    rng = np.random.default_rng(0)
    for rate, channels in inputs:
        audio = (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
        restorer = Restorer(system)
        took = _median_time(lambda r=restorer, a=audio, sr=rate: r(a, sr), repeats=3)
        out[(rate, channels)] = took / seconds
    return out
