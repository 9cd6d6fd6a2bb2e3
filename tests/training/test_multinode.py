"""Two nodes on one machine: two torchrun launches of the training entry point, one process each, node ranks
0 and 1, one master on 127.0.0.1, gloo; and, where this machine can run two slurmd, a real 2-node Slurm job.
The run directory is shared, as on a cluster's shared disk."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_app import config as C
from lightning_app.systems.checkpoints import load_system
from lightning_app.training import run as T
from lightning_app.training import slurm as S
from tests.helpers import slurm_job_state, wait_until

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("multinode_worker.py")
pytestmark = pytest.mark.slow
if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

EXAMPLES, BATCH, EPOCHS = 16, 4, 2
STEPS_PER_EPOCH = EXAMPLES // 2 // BATCH  # each node draws half of an epoch's examples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(root: Path) -> list[str]:
    return [
        "pure_noise2noise",
        "--use",
        "trainer/multinode",
        "--use",
        "data/smoke",
        "--use",
        "model/tiny",
        "trainer.num_nodes=2",
        "trainer.devices=1",
        "trainer.accelerator=cpu",
        "trainer.precision=32",
        f"trainer.max_epochs={EPOCHS}",
        f"data.train_examples_per_epoch={EXAMPLES}",
        f"data.batch_size={BATCH}",
        "data.val_clips=5",
        f"run.root={root / 'runs'}",
        f"data.cache_dir={root / 'cache'}",
    ]


def two_nodes(out: Path, tag: str, args: list[str], *options: str, timeout=240):
    """Both nodes' exit codes and records; each node is `torchrun --nnodes 2 --node_rank R --nproc_per_node
    1`.

    ``options`` go to tests/multinode_worker.py (--stop K, --late RUN_DIR)."""
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    nodes = []
    try:
        for node in (0, 1):
            with (out / f"{tag}-node{node}.log").open("w") as log:
                nodes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "torch.distributed.run",
                            "--nnodes",
                            "2",
                            "--node_rank",
                            str(node),
                            "--nproc_per_node",
                            "1",
                            "--master_addr",
                            "127.0.0.1",
                            "--master_port",
                            str(port),
                            str(WORKER),
                            str(out),
                            tag,
                            *options,
                            "--",
                            *args,
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=ROOT,
                        start_new_session=True,
                    )
                )
        codes = [p.wait(timeout=timeout) for p in nodes]
    finally:  # a node that hangs (or fails to start its peer) takes its torchrun and worker down with it
        for p in nodes:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    logs = "\n".join((out / f"{tag}-node{n}.log").read_text()[-2000:] for n in (0, 1))
    records = [
        json.loads(p.read_text()) if (p := out / f"{tag}-rank{r}.json").is_file() else None for r in (0, 1)
    ]
    return codes, records, logs


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_nodes")
    # Node 1 starts late, when node 0 has made version_0: it must not take version_1 for its own.
    late = root / "runs" / "pure_noise2noise" / "version_0"
    codes, records, logs = two_nodes(root / "out", "fit", train_args(root), "--late", str(late))
    assert codes == [0, 0], logs
    return root, records


def validate_in_one_process(run_dir: Path, checkpoint: Path) -> dict[str, float]:
    cfg = C.compose_saved(run_dir / "config.yaml", ["trainer.num_nodes=1"])
    system = load_system(checkpoint)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=T.build_callbacks(cfg, run_dir / "unused")[:3],
    )  # waveform, perceptual, alarm
    trainer.validate(system, datamodule=T.build_datamodule(cfg, system), verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_two_nodes_train_one_run_and_score_like_one_process(fitted):
    root, (rank0, rank1) = fitted
    assert [(r["rank"], r["node_rank"], r["world_size"]) for r in (rank0, rank1)] == [(0, 0, 2), (1, 1, 2)]
    assert rank0["global_step"] == rank1["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert len(rank0["batches"]) == len(rank1["batches"]) == EPOCHS * STEPS_PER_EPOCH
    assert not set(rank0["batches"]) & set(rank1["batches"]), "the two nodes drew the same training examples"

    exp_dir = root / "runs" / "pure_noise2noise"
    assert [p.name for p in exp_dir.iterdir()] == ["version_0"], "one run directory, not one per node"
    run_dir = exp_dir / "version_0"
    assert rank0["run_dir"] == rank1["run_dir"] == str(run_dir), "every node names rank 0's run directory"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list(run_dir.glob("events.*"))) == 1
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == rank0["global_step"]
    )

    two = json.loads((run_dir / "metrics.json").read_text())[
        "metrics"
    ]  # the last validation: last.ckpt's weights
    one = validate_in_one_process(run_dir, run_dir / "checkpoints" / "last.ckpt")
    assert one["val_status/clips"] == two["val_status/clips"] == 5, (
        "5 clips on 2 nodes: none dropped, none twice"
    )
    # (val/loss* are left out: their content term compares latents within a batch, and batches differ per
    # node)
    keys = sorted(k for k in one if k in two and not k.startswith("val/loss"))
    for key in (
        "val/si_sdr_i",
        "val/snr",
        "val/amplitude_retention",
        "val/pesq",
        "val/stoi",
        "val/visqol",
        "val/leakage",
        "val/residual_noise",
    ):
        assert key in keys, key
    # abs 1e-5: a gain (pesq_i = pesq - pesq_input) of two float32 scores near 1 keeps their rounding, ~3e-6;
    # any real difference in what was scored moves these metrics by orders of magnitude more.
    assert {k: two[k] for k in keys} == pytest.approx({k: one[k] for k in keys}, rel=1e-5, abs=1e-5)


def test_an_interrupted_two_node_run_resumes_on_both_nodes(fitted, tmp_path):
    _, uninterrupted = fitted
    args = train_args(tmp_path)
    codes, records, logs = two_nodes(tmp_path / "out", "first", args, "--stop", "1")
    assert 0 not in codes, "both nodes were stopped"
    assert [r["global_step"] for r in records] == [STEPS_PER_EPOCH] * 2, logs
    run_dir = tmp_path / "runs" / "pure_noise2noise" / "version_0"
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS_PER_EPOCH
    )

    codes, records, logs = two_nodes(tmp_path / "out", "resumed", [*args, "--resume"])
    assert codes == [0, 0], logs
    assert [r["global_step"] for r in records] == [EPOCHS * STEPS_PER_EPOCH] * 2, (
        "same final step on both nodes"
    )
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"], "resumed in place"
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == EPOCHS * STEPS_PER_EPOCH
    )
    for rank in (0, 1):  # only the missing epoch was trained, on the draws an uninterrupted run made
        assert records[rank]["batches"] == uninterrupted[rank]["batches"][STEPS_PER_EPOCH:], rank


# ----------------------------------------------------------------------------- the same under Slurm
@pytest.fixture(scope="module")
def two_node_slurm(tmp_path_factory):
    """A private Slurm of two nodes, n1 and n2: two slurmd on this host (scripts/slurm_two_nodes.sh)."""
    conf_dir = tmp_path_factory.mktemp("slurm_two_nodes")
    # The single-node script installs and starts munge, which the two-node one needs.
    for command in (["slurm_single_node.sh"], ["slurm_two_nodes.sh", "start", str(conf_dir)]):
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode == 3:
            pytest.skip(f"no two-node Slurm here: {done.stderr.strip() or done.stdout.strip()}")
        assert done.returncode == 0, done.stderr
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLURM_CONF", str(conf_dir / "slurm.conf"))  # sbatch, squeue, scontrol: this cluster
        yield conf_dir
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm_two_nodes.sh"), "stop", str(conf_dir)], timeout=60)


#: A job on the private cluster's two nodes, one CPU task each.
TWO_NODES_HERE = [
    "nodes=2",
    "gpus_per_node=0",
    "tasks_per_node=1",
    "cpus_per_task=1",
    "time=00:15:00",
    # n1 and n2 are names for this host that nothing else resolves
    "setup=['export MASTER_ADDR=127.0.0.1']",
]


def test_a_two_node_slurm_job_trains_one_run_and_resumes_after_a_requeue(two_node_slurm, tmp_path):
    epochs, examples = (
        6,
        16,
    )  # 12 steps (10 would hit a ZeroDivisionError in OneCycleLR: 0.1 x 10 warm-up steps = 1)
    path, job = S.submit(
        "pure_noise2noise",
        [
            f"run.root={tmp_path / 'runs'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "use=[data/smoke,model/tiny]",
            "trainer.precision=32",
            f"trainer.max_epochs={epochs}",
            f"data.train_examples_per_epoch={examples}",
            f"data.batch_size={BATCH}",
        ],
        blocks=["trainer/multinode"],
        cluster_overrides=TWO_NODES_HERE,
    )
    script = path.read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    assert "trainer.num_nodes=2 trainer.devices=1" in script
    run = path.parent
    last = run / "checkpoints" / "last.ckpt"
    wait_until(last.is_file, 180, "the first checkpoint")
    first = torch.load(last, weights_only=True)["global_step"]
    subprocess.run(
        ["scancel", "--signal=USR1", "--batch", job], check=True
    )  # what Slurm does before a time limit
    wait_until(lambda: slurm_job_state(job) == "PENDING", 120, "the job to be requeued")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
    wait_until(
        lambda: (run / "metrics.json").is_file() and not slurm_job_state(job), 300, "the job to finish"
    )

    log = (run / f"slurm-{job}.out").read_text()
    assert "requeueing job" in log and "resuming" in log, log[-2000:]
    for rank in (0, 1):  # twice each: the first start and the requeued one
        assert log.count(f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2") == 2, log[-2000:]
    for node in ("n1", "n2"):  # each slurmd ran the training step, both times
        slurmd_log = (two_node_slurm / "log" / f"slurmd-{node}.log").read_text()
        assert slurmd_log.count(f"launch task StepId={job}.0 ") == 2, node
    assert [p.name for p in run.parent.iterdir()] == ["version_0"], (
        "one run directory across nodes and restarts"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list(run.glob("events.*"))) == 2, "one per start, by global rank 0 only: one TensorBoard run"
    steps_per_epoch = examples // 2 // BATCH
    assert first < epochs * steps_per_epoch, "the signal came after training had ended"
    assert torch.load(last, weights_only=True)["global_step"] == epochs * steps_per_epoch, (
        "no step lost or twice"
    )


def test_a_two_node_slurm_job_ends_when_one_rank_fails(two_node_slurm, tmp_path):
    """The rank that lives would wait in DDP for the dead one until the time limit: the step must end."""
    rank = tmp_path / "rank.sh"  # stands in for the interpreter: rank 1 fails at once, rank 0 waits
    rank.write_text(
        '#!/bin/bash\nif [ "$SLURM_PROCID" = 1 ]; then echo "rank 1 fails"; exit 3; fi\nsleep 600\n'
    )
    rank.chmod(0o755)
    path, job = S.submit(
        "pure_noise2noise",
        [f"run.root={tmp_path / 'runs'}", "use=[data/smoke,model/tiny]"],
        blocks=["trainer/multinode"],
        cluster_overrides=TWO_NODES_HERE,
        python=str(rank),
    )
    try:
        wait_until(lambda: not slurm_job_state(job), 120, "the job to end after rank 1 failed")
    finally:
        subprocess.run(["scancel", job], capture_output=True)  # a hanging step must not outlive the test
    log = (path.parent / f"slurm-{job}.out").read_text()
    assert "rank 1 fails" in log, log[-2000:]
