"""Run every analysis notebook and store its outputs in it (``make notebooks-run``), so a code host shows the
figures and tables without running anything.

    python scripts/run_notebooks.py [NOTEBOOK ...] [--runs "runs/a/version_0 runs/b/*"]

Without --runs each notebook trains its own tiny runs under runs/notebooks/ (reused on the next call). A
notebook whose cell fails is left as it was stored, and the command exits 1 naming it.
"""

import argparse
import sys
from pathlib import Path

from lightning_app.config import PROJECT_ROOT
from lightning_app.evaluation import notebooks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: every one in notebooks/)"
    )
    p.add_argument("--runs", default="", help="run directories or globs the notebooks read (C2C_RUNS)")
    args = p.parse_args(argv)
    paths = args.notebooks or sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
    env = {"C2C_RUNS": args.runs} if args.runs else {}
    failed = []
    for path in paths:
        try:
            print(notebooks.run_and_store(path, env), flush=True)
        except Exception as error:  # one line per notebook; the others still run
            first = str(error).strip().splitlines()
            print(f"{path}: not stored, a cell failed: {first[-1] if first else type(error).__name__}")
            failed.append(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
