"""Reading checkpoints: one clear line for every file that is not a usable one.

Every checkpoint this suite reads (to restore, to evaluate, to resume, to start a stage from)
goes through ``read_checkpoint``. Loading is always ``weights_only``: a checkpoint is data, and
a message never suggests loading it any other way.

Restoring needs only the network: ``load_model`` builds a ``Denoiser`` without importing Lightning,
whose import would cost every start of the command line seconds and hundreds of MB (each task of a
cluster restore starts one). ``load_system`` gives the whole LightningModule, for training and validation.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from lightning_app import compat
from lightning_app.config import CHOICES
from lightning_app.nets import NETS, build_net, settings_read_by

if TYPE_CHECKING:
    from lightning_app.systems.base import DenoiseSystem

#: the system kinds a checkpoint may name (a test keeps this equal to lightning_app.systems.SYSTEMS)
SYSTEM_KINDS = CHOICES["system.kind"]

#: what Lightning needs to continue a run, beyond the weights
TRAINING_STATE = ("epoch", "global_step", "optimizer_states", "loops")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(2)
    except OSError:
        return b""


def _is_broken_zip(path: Path) -> bool:
    """torch writes zip archives: one that starts like a zip but has no readable directory was cut short."""
    return _head(path) == b"PK" and not zipfile.is_zipfile(path)


NOT_A_CHECKPOINT = "not a PyTorch checkpoint of plain tensors and values (not written by this suite)"


def _unreadable_reason(path: Path, exc: BaseException) -> str:
    if not isinstance(exc, (OSError, EOFError)) and _head(path) not in (b"", b"PK"):
        # Not torch's zip archive, so read as its older bare pickle: whatever the unpickler tripped on in it
        # (UnpicklingError, IndexError, ValueError, ... on random bytes), the file is something else.
        return NOT_A_CHECKPOINT
    if (
        isinstance(exc, (EOFError, zipfile.BadZipFile))
        or "central directory" in str(exc)
        or "zip archive" in str(exc)
    ):
        return "the file is truncated or corrupt (an interrupted copy or save?)"
    if isinstance(exc, pickle.UnpicklingError):
        # torch's own text here recommends unsafe loading; this file is either not a checkpoint
        # or holds Python objects, and neither is something to execute.
        return NOT_A_CHECKPOINT
    if isinstance(exc, OSError) and _is_broken_zip(path):
        return "the file is truncated or corrupt (an interrupted copy or save?)"
    if isinstance(exc, OSError):
        return f"cannot be read ({exc.strerror or exc})"
    return f"cannot be read as a checkpoint ({type(exc).__name__})"


def read_checkpoint(path: str | Path, for_resume: bool = False) -> dict:
    """The checkpoint's contents, checked to be a c2c-denoise checkpoint (and to continue a run)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("checkpoints/*.ckpt")) or sorted(path.glob("*.ckpt"))
        hint = f", e.g. {found[0]}" if found else ""
        raise CheckpointError(f"{path}: a folder, not a checkpoint file; give a .ckpt file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (an interrupted copy or save?)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the file
        raise CheckpointError(f"{path}: {_unreadable_reason(path, exc)}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        what = type(ckpt).__name__ if not isinstance(ckpt, dict) else "a dict without state_dict"
        raise CheckpointError(f"{path}: not a c2c-denoise checkpoint (it holds {what})")
    missing = [k for k in ("hyper_parameters", "system_kind") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a c2c-denoise checkpoint (no {' or '.join(missing)})")
    if ckpt["system_kind"] not in SYSTEM_KINDS:
        raise CheckpointError(
            f"{path}: unknown system kind {ckpt['system_kind']!r} (known: {', '.join(sorted(SYSTEM_KINDS))})"
        )
    _upgrade(ckpt, path)
    if for_resume:
        missing = [k for k in TRAINING_STATE if k not in ckpt]
        if missing:
            raise CheckpointError(
                f"{path}: holds weights but no training state ({', '.join(missing)}), so a run "
                f"cannot continue from it; start a new run from it with system.init_from={path}"
            )
    return ckpt


def _upgrade(ckpt: dict, path: Path) -> None:
    """Settings of a checkpoint from an earlier schema in today's shape (``compat``), in place."""
    try:
        schema = compat.checkpoint_schema(ckpt, str(path))
    except compat.NewerSchemaError as exc:
        raise CheckpointError(str(exc)) from None
    model = ckpt["hyper_parameters"].get("model") if isinstance(ckpt["hyper_parameters"], dict) else None
    if isinstance(model, dict) and model.get("kind") in NETS:
        kind = model["kind"]
        params = compat.upgrade_model_settings(
            kind, {k: v for k, v in model.items() if k != "kind"}, schema, known=settings_read_by(kind)
        )
        ckpt["hyper_parameters"]["model"] = {"kind": kind, **params}


def describe_mismatch(exc: Exception) -> str:
    """load_state_dict's many-line error in a few words."""
    text = str(exc)
    parts = []
    for label, marker in (("missing", "Missing key(s)"), ("unexpected", "Unexpected key(s)")):
        if marker in text:
            keys = text.split(marker, 1)[1].split(":", 1)[1].split(". ", 1)[0].split(",")
            parts.append(f"{len(keys)} {label} (e.g. {keys[0].strip()})")
    if "size mismatch" in text:
        count = text.count("size mismatch")
        first = text.split("size mismatch for ", 1)[1].split(":", 1)[0]
        parts.append(f"{count} of another shape (e.g. {first})")
    return "; ".join(parts) or text.strip().splitlines()[0][:200]


def _load_weights(module: nn.Module, state_dict: dict, path: str | Path) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: its weights do not match the model its own settings describe ({describe_mismatch(exc)})"
        ) from None


def system_from_checkpoint(ckpt: dict, path: str | Path) -> DenoiseSystem:
    """The trained system a checked checkpoint describes, with its weights."""
    from lightning_app.systems.registry import SYSTEMS  # imports Lightning

    try:
        system = SYSTEMS[ckpt["system_kind"]](**ckpt["hyper_parameters"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its stored model settings do not build a model ({exc})") from None
    _load_weights(system, ckpt["state_dict"], path)
    return system


class Denoiser(nn.Module):
    """A trained network and its sample rate: all that restoring needs of a checkpoint.

    Every variant's inference path is its network's forward (``DenoiseSystem.enhance``; a test holds
    each registered system to it), so no LightningModule is needed to run one.
    """

    def __init__(self, net: nn.Module, sample_rate: int, kind: str, card: dict | None = None):
        super().__init__()
        self.net = net
        self.sample_rate = int(sample_rate)
        self.kind = kind
        self.card = dict(card or {})

    def enhance(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.net(noisy)

    forward = enhance


def denoiser_from_checkpoint(ckpt: dict, path: str | Path) -> Denoiser:
    """The network a checked checkpoint describes, with its weights; the rest of the system is not built."""
    settings = ckpt["hyper_parameters"]
    try:
        net = build_net(**settings["model"])
        rate = int(settings["sample_rate"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: its stored model settings do not build a model ({exc})") from None
    weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    model = Denoiser(net, rate, ckpt["system_kind"], ckpt.get("card"))
    _load_weights(model, weights, path)
    return model


def export_for_inference(source: str | Path, destination: str | Path, **card) -> Path:
    """A checkpoint with only what restoring needs (weights, model settings, kind, epoch/step) plus
    ``card`` (plain values: training command, data, numbers); a third of the size without optimizer state."""
    ckpt = read_checkpoint(source)
    slim = {
        k: ckpt[k]
        for k in ("state_dict", "hyper_parameters", "system_kind", "epoch", "global_step")
        if k in ckpt
    }
    slim["card"] = card
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.partial")
    torch.save(slim, tmp)
    tmp.replace(destination)  # a complete file or none
    return destination


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> Denoiser:
    """The trained network from a checkpoint, ready to restore on ``device`` (Lightning is not imported)."""
    return for_inference(denoiser_from_checkpoint(read_checkpoint(checkpoint), checkpoint), device)


def load_system(checkpoint: str | Path, device: str | torch.device = "cpu") -> DenoiseSystem:
    """The trained system (the LightningModule) from a checkpoint, ready for inference on ``device``."""
    return for_inference(system_from_checkpoint(read_checkpoint(checkpoint), checkpoint), device)


def for_inference(system: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """Eval mode on ``device``, convolution weights channels-last: oneDNN then picks its NHWC kernels
    and the layout carries through every layer: the same numbers, faster on a CPU."""
    return system.to(device=device, memory_format=torch.channels_last).eval()
