"""Running the analysis notebooks: in a fresh kernel of this interpreter, with C2C_* settings, and (for
``make notebooks-run``) storing their outputs so a code host shows the figures without running anything.

Stored notebooks keep tables, text and figures. Audio players are replaced by a line saying how to hear them:
one 6-s 44.1 kHz player is about 700 kB of base64, and notebook 01 shows dozens; the figures are what a
reader on a code host can use.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

AUDIO_NOTE = "({} audio player(s) not stored in the notebook: run it, e.g. with make notebooks, to listen)\n"


def _kernel_dir(root: Path) -> Path:
    """A kernel spec named c2c for this interpreter: a system-wide "python3" spec could point elsewhere."""
    spec = root / "kernels" / "c2c"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "c2c-denoise",
                "language": "python",
            }
        )
    )
    return root


def execute(path: Path, env: Mapping[str, str] = (), cwd: Path | None = None, timeout: int = 1800):
    """Run the notebook at ``path`` top to bottom with ``env`` set for its kernel; returns the executed
    nbformat node (the file is not touched). A failing cell raises nbclient's CellExecutionError, which
    names the cell and its error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="c2c-kernel-") as kernels:
        saved = {key: os.environ.get(key) for key in [*env, "JUPYTER_PATH"]}
        os.environ.update(env)
        os.environ["JUPYTER_PATH"] = str(_kernel_dir(Path(kernels)))
        try:
            NotebookClient(
                nb,
                timeout=timeout,
                kernel_name="c2c",
                resources={"metadata": {"path": str(cwd or Path(path).parent)}},
            ).execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return nb


def outputs_text(nb) -> str:
    """Every code cell's outputs as one JSON string (what the tests search)."""
    return json.dumps([o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs])


def _smaller_png(encoded: str) -> str:
    """The figure with a 256-colour palette when that is smaller (about a third for a spectrogram panel;
    the colour maps drawn here have 256 colours anyway)."""
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(encoded)
    buffer = io.BytesIO()
    image = Image.open(io.BytesIO(raw)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode() if buffer.tell() < len(raw) else encoded


def _is_caption(output) -> bool:
    """A one-line print just before a player names it: without the player it names nothing."""
    text = output.get("text", "") if output.get("output_type") == "stream" else ""
    return output.get("name") == "stdout" and text.count("\n") <= 1 and len(text) < 80


def for_storage(nb):
    """The executed notebook as it is stored: audio players (and the one-line captions printed before them)
    replaced by one note per cell, stderr dropped (warnings of a library say nothing to a reader), figures
    with a palette, the kernel's own metadata removed so re-runs diff only in outputs."""
    import nbformat

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept, players = [], 0
        for output in cell.outputs:
            data = output.get("data", {})
            if "<audio" in data.get("text/html", ""):
                players += 1
                if kept and _is_caption(kept[-1]):
                    kept.pop()
                continue
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                continue
            if "image/png" in data:
                data["image/png"] = _smaller_png(data["image/png"])
            kept.append(output)
        if players:
            kept.append(nbformat.v4.new_output("stream", name="stdout", text=AUDIO_NOTE.format(players)))
        cell.outputs = kept
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def figures(nb) -> int:
    """How many figures (PNG outputs) the notebook holds."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def run_and_store(path: Path, env: Mapping[str, str] = (), cwd: Path | None = None) -> str:
    """Execute the notebook and write it back with its outputs (see for_storage); one line on what it holds.
    The file is replaced only when every cell ran: a failure leaves the stored notebook as it was."""
    import nbformat

    nb = for_storage(execute(path, env, cwd))
    tmp = Path(path).with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, path)
    return f"{path}: {figures(nb)} figures, {Path(path).stat().st_size / 1024:.0f} kB"
