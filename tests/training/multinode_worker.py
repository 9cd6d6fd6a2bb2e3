"""Launched by test_multinode.py under torchrun, once per simulated node: the real training entry point
(lightning_app.train.main) with a callback that records what this rank drew.

    python -m torch.distributed.run --nnodes 2 --node_rank R ... tests/multinode_worker.py OUT_DIR TAG \
        [--stop K] [--late RUN_DIR] -- EXPERIMENT [train.py arguments]

Writes OUT_DIR/TAG-rank<global rank>.json: {rank, node_rank, world_size, batches (a fingerprint of
every training batch), global_step, run_dir (what train() returned on this rank)}. --stop K: every rank
dies (os._exit) as epoch K+1 starts, after last.ckpt of epoch K is written, as a preempted job would.
--late RUN_DIR: the ranks other than 0 start only once rank 0 has written RUN_DIR/config.yaml (a slower
node: it finds rank 0's new run directory on the shared disk before it picks its own).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_app import train as train_cli  # noqa: E402
from lightning_app.training import run as T  # noqa: E402

INTERRUPTED = 75


class Record(L.Callback):
    def __init__(self, out: Path, tag: str, stop_after_epoch: int | None):
        self.out, self.tag, self.stop = out, tag, stop_after_epoch
        self.record = {"batches": []}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.record["batches"].append(round(float(batch["noisy"].double().abs().sum()), 6))

    def on_train_epoch_start(self, trainer, pl_module):
        if self.stop is not None and trainer.current_epoch == self.stop:
            # last.ckpt of epoch STOP is on disk: Lightning saved it at that epoch's end, behind a barrier
            self.write(trainer)
            os._exit(INTERRUPTED)

    def on_train_end(self, trainer, pl_module):
        self.write(trainer)

    def write(self, trainer):
        self.record.update(
            rank=trainer.global_rank,
            node_rank=trainer.node_rank,
            world_size=trainer.world_size,
            global_step=trainer.global_step,
        )
        self.path = self.out / f"{self.tag}-rank{trainer.global_rank}.json"
        self.path.write_text(json.dumps(self.record))


if __name__ == "__main__":
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("tag")
    parser.add_argument("--stop", type=int)
    parser.add_argument("--late", type=Path)
    args = parser.parse_args(sys.argv[1:split])
    if args.late and os.environ["RANK"] != "0":
        deadline = time.monotonic() + 120
        while not (args.late / "config.yaml").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
    recorder = Record(args.out, args.tag, args.stop)
    build_callbacks, train = T.build_callbacks, T.train
    T.build_callbacks = lambda cfg, run_dir: build_callbacks(cfg, run_dir) + [recorder]

    def recorded_train(*args, **kwargs):
        result = train(*args, **kwargs)
        if hasattr(recorder, "path"):  # it trained (a finished run returns at once)
            recorder.record["run_dir"] = result["run_dir"]
            recorder.path.write_text(json.dumps(recorder.record))
        return result

    T.train = recorded_train
    sys.exit(train_cli.main(sys.argv[split + 1 :]))
