"""Results worth keeping between runs (file indexes, pair alignments), as JSON named by a fingerprint.

The fingerprint covers every file's path, size and modification time (and any settings), so a changed
corpus is measured again instead of read from a stale cache. Files are written whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path


def fingerprint(files: Iterable[str | os.PathLike], settings: object = None) -> str:
    """16 hex digits that change when a file is added, removed, resized or touched, or a setting changes."""
    stamp = hashlib.sha1(repr(settings).encode()) if settings is not None else hashlib.sha1()
    for f in files:
        st = Path(f).stat()
        stamp.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
    return stamp.hexdigest()[:16]


def cached_json(cache_dir: str | os.PathLike | None, kind: str, key: str, build: Callable[[], dict]) -> dict:
    """``cache_dir/<kind>-<key>.json`` if it exists, else ``build()``'s result, saved there (no cache_dir:
    always built). A ``build`` that raises leaves no file."""
    path = Path(cache_dir) / f"{kind}-{key}.json" if cache_dir else None
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    data = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named per writer: every node's first process builds it (prepare_data), maybe on one shared disk.
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.partial")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    return data
