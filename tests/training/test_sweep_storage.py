"""Shared studies: PostgreSQL and journal storage, bad storage in one line, workers that share, die and retry.

The PostgreSQL tests run against a real local server (scripts/postgres_local.sh, which .ci/run starts) or the
one $C2C_TEST_POSTGRES_URL names; each test gets a database of its own. Without a server they are skipped.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lightning_app import sweep as sweep_cli
from lightning_app.training import slurm as SUB
from lightning_app.training import study_storage as ST
from lightning_app.training import sweeps as S

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "postgresql://c2c_test:c2c_test@127.0.0.1:5433/c2c_test"
STUDY = "supervised_unet-learning_rate"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
# Tiny trials: the smoke data and network, one epoch, no ViSQOL or media (seconds each on 2 cores).
TINY = [
    "use=[data/smoke,model/tiny]",
    "trainer.max_epochs=1",
    "metrics.visqol_clips=0",
    "media.clips=0",
    "sampler=random",
    "pruning=false",
    "overrides=[]",
]


def _sweep_args(tmp_path: Path, *extra: str) -> list[str]:
    return [f"run.root={tmp_path / 'runs'}", f"data.cache_dir={tmp_path / 'cache'}", *TINY, *extra]


def _one_line_error(capsys, argv) -> str:
    assert sweep_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), f"not one error line: {err!r}"
    return err


# ----------------------------------------------------------------------------- storage shapes, no server
def test_storage_shapes_name_sqlite_journal_and_postgresql(tmp_path):
    assert ST.parse(None, tmp_path) == ST.StudyStorage(
        "sqlite", f"sqlite:///{tmp_path}/study.db", f"{tmp_path}/study.db", in_sweep_dir=True
    )
    assert ST.parse("journal", tmp_path).file == tmp_path / "study.journal"
    assert ST.parse("journal:///shared/sweeps/a.journal", tmp_path).file == Path("/shared/sweeps/a.journal")
    pg = ST.parse("postgresql://sweeper:s3cret@db.lab:5432/c2c", tmp_path)
    assert (pg.kind, pg.url) == ("database", "postgresql+psycopg://sweeper:s3cret@db.lab:5432/c2c"), (
        "plain postgresql:// URLs use the [postgres] extra's psycopg 3 driver"
    )
    assert pg.shown == "postgresql://sweeper:***@db.lab:5432/c2c"
    assert ST.masked("postgresql://u:p@ss:w@rd@h/db") == "postgresql://u:***@h/db"
    assert ST.masked("weird://u:s3cret@") == "weird://u:***@", "masked even where the URL cannot be parsed"


@pytest.mark.slow
@pytest.mark.parametrize(
    "storage, expected",
    [
        (
            "postgresql://c2c:s3cret@127.0.0.1:1/sweeps",
            r"cannot reach the study database postgresql://c2c:\*\*\*@127\.0\.0\.1:1/sweeps: "
            r".*port 1 failed: Connection refused",
        ),
        (
            "postgresql://c2c:s3cret@db.lab:port/sweeps",
            r"'postgresql://c2c:\*\*\*@db\.lab:port/sweeps' is not a URL",
        ),
        ("postgress://c2c:s3cret@db.lab/sweeps", r"unknown database kind 'postgress'"),
        ("journal://relative/study.journal", r"a journal needs an absolute path"),
        ("journal:///no/such/folder/study.journal", r"the folder /no/such/folder does not exist"),
    ],
)
def test_a_bad_storage_fails_in_one_line_before_anything_exists(tmp_path, capsys, storage, expected):
    err = _one_line_error(
        capsys, ["supervised_unet", "learning_rate", *_sweep_args(tmp_path), f"storage={storage}"]
    )
    assert re.search(expected, err), err
    assert "s3cret" not in err, "the password is never shown"
    assert not (tmp_path / "runs").exists(), "nothing is created before the storage is reached"


def test_a_missing_driver_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the [postgres] extra were not installed
    with pytest.raises(ST.StorageError, match=r"install the \[postgres\] extra"):
        ST.check(ST.parse("postgresql://c2c@127.0.0.1:1/sweeps", tmp_path))


def test_storage_may_come_from_an_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("C2C_TEST_SWEEP_STORAGE", "journal")
    sweep = S.load_sweep("learning_rate", ["storage=${oc.env:C2C_TEST_SWEEP_STORAGE}"])
    assert sweep.storage == "journal"
    monkeypatch.delenv("C2C_TEST_SWEEP_STORAGE")
    with pytest.raises(S.C.ConfigError, match="C2C_TEST_SWEEP_STORAGE"):
        S.load_sweep("learning_rate", ["storage=${oc.env:C2C_TEST_SWEEP_STORAGE}"])
    with pytest.raises(S.C.ConfigError, match="heartbeat must be a whole number"):
        S.load_sweep("learning_rate", ["heartbeat=0"])


def test_submit_sweep_checks_the_storage_before_queueing(tmp_path, monkeypatch):
    monkeypatch.setattr(
        SUB, "sbatch", lambda *a: pytest.fail("sbatch ran although the database is unreachable")
    )
    with pytest.raises(ST.StorageError, match=r"127\.0\.0\.1:1"):
        SUB.submit_sweep(
            "supervised_unet",
            "learning_rate",
            2,
            [f"run.root={tmp_path}", "storage=postgresql://c2c:s3cret@127.0.0.1:1/sweeps"],
        )
    assert not (tmp_path / "sweeps").exists(), "no sweep folder, no job script"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_journal_heartbeat_fails_a_silent_trial_and_queues_its_values_again(tmp_path):
    storage = ST.open_storage(ST.parse(f"journal://{tmp_path}/study.journal", tmp_path), heartbeat_s=1)
    study = optuna.create_study(study_name="s", storage=storage)
    silent, beating = study.ask(), study.ask()
    silent.suggest_float("x", 0, 1)
    storage.record_heartbeat(beating._trial_id)
    time.sleep(1.5)
    storage.record_heartbeat(beating._trial_id)  # alive: beats within 2 x 1 s
    time.sleep(1.0)
    S.fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[silent.number] == TrialState.FAIL and states[beating.number] == TrialState.RUNNING, states
    retry = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == silent.params, "the silent trial's values are queued again"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_workers_racing_for_the_last_trials_never_overshoot_and_draw_their_own_values(
    kind, tmp_path, request
):
    """Three workers (threads, each with its own storage as separate processes have) on one study, with
    trials so short that they mostly race for the claim: exactly ``target`` trials, each drawn anew."""
    import threading

    target = 12
    spec = {"sqlite": None, "journal": f"journal://{tmp_path}/study.journal"}.get(
        kind
    ) or request.getfixturevalue("postgres_url")
    storage = ST.parse(spec, tmp_path)
    sweep = S.OmegaConf.create({"sampler": "random", "sampler_seed": 0, "params": {}})
    errors = []

    def worker():
        try:
            study = optuna.create_study(
                study_name="race", storage=ST.open_storage(storage, heartbeat_s=5), load_if_exists=True
            )
            S.run_trials(
                study,
                lambda trial: trial.suggest_float("x", 0.0, 1.0),
                target,
                lambda: ST.claim_lock(storage, "race"),
                lambda n: S.make_sampler(sweep, n),
                grace_s=0.2,
            )
        except Exception as exc:  # surfaced below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    trials = optuna.load_study(
        study_name="race", storage=ST.open_storage(storage, heartbeat_s=5)
    ).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * target, f"{len(trials)} trials for {target}"
    assert len({t.params["x"] for t in trials}) == target, "workers drew the same values (one seed for all)"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_worker_with_nothing_to_start_checks_that_the_last_trial_is_alive_before_leaving(tmp_path):
    """The last trial's worker died a moment ago (its beat is still fresh): the last worker standing notices
    within one grace period and runs the trial's values itself, instead of leaving the study one short."""
    storage = ST.parse(f"journal://{tmp_path}/study.journal", tmp_path)
    journal = ST.open_storage(storage, heartbeat_s=1)
    study = optuna.create_study(study_name="s", storage=journal)
    study.enqueue_trial({"x": 0.25})
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=1)
    orphan = study.ask()
    orphan.suggest_float("x", 0.0, 1.0)
    journal.record_heartbeat(orphan._trial_id)  # one beat, then its worker is gone
    ran = S.run_trials(
        study,
        lambda trial: trial.suggest_float("x", 0.0, 1.0),
        2,
        lambda: ST.claim_lock(storage, "s"),
        lambda n: optuna.samplers.RandomSampler(seed=n),
        grace_s=2,
    )
    trials = study.get_trials()
    assert ran == 1 and [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    assert trials[2].params == orphan.params, "the orphan's values ran again"


def test_a_worker_whose_trials_keep_failing_stops_and_one_that_fails_now_and_then_does_not(tmp_path):
    """Failed trials do not count towards the target: without a limit a cause that fails every trial (a
    broken data path, a NaN objective) would have the worker start trials for ever."""
    storage = ST.parse(f"journal://{tmp_path}/study.journal", tmp_path)
    study = optuna.create_study(study_name="s", storage=ST.open_storage(storage, heartbeat_s=60))

    def run(objective, target):
        return S.run_trials(
            study,
            objective,
            target,
            lambda: ST.claim_lock(storage, "s"),
            lambda n: optuna.samplers.RandomSampler(seed=n),
            grace_s=0,
            max_failures=3,
        )

    def broken(trial):
        raise RuntimeError("objective val/si_sdr was not logged")

    with pytest.raises(
        S.SweepStopped, match=r"last 3 trials this worker ran failed \(trial 2: objective val/si_sdr"
    ):
        run(broken, 10)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * 3

    calls = iter(range(100))

    def flaky(trial):  # every other trial fails: never 3 in a row
        if next(calls) % 2:
            raise RuntimeError("a bad draw")
        return trial.suggest_float("x", 0.0, 1.0)

    assert run(flaky, 4) == 7
    assert sum(t.state == TrialState.COMPLETE for t in study.get_trials()) == 4


# ----------------------------------------------------------------------------- a real PostgreSQL server
def _server_url() -> str:
    return os.environ.get("C2C_TEST_POSTGRES_URL", DEFAULT_URL)


@pytest.fixture(scope="module")
def postgres_server():
    """The test server's URL (started by scripts/postgres_local.sh unless C2C_TEST_POSTGRES_URL names one)."""
    if "C2C_TEST_POSTGRES_URL" not in os.environ:
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres_local.sh")], capture_output=True, text=True)
    try:
        ST.check(ST.parse(_server_url(), ROOT))
    except ST.StorageError as exc:
        pytest.skip(f"no PostgreSQL server for the tests ({exc}); bash scripts/postgres_local.sh starts one")
    return _server_url()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database on the test server, dropped afterwards."""
    import sqlalchemy

    name = f"c2c_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(ST.parse(postgres_server, ROOT).url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield str(
        sqlalchemy.engine.make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    )
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _without_password(url) -> str:
    import sqlalchemy

    return sqlalchemy.engine.URL.create(
        url.drivername, url.username, None, url.host, url.port, url.database
    ).render_as_string(hide_password=False)


def test_server_side_problems_are_one_line_too(postgres_server, tmp_path, capsys):
    import sqlalchemy

    url = sqlalchemy.engine.make_url(postgres_server)
    wrong_password = url.set(password="not-the-password").render_as_string(hide_password=False)
    err = _one_line_error(
        capsys, ["supervised_unet", "learning_rate", *_sweep_args(tmp_path), f"storage={wrong_password}"]
    )
    assert "password authentication failed" in err and url.host in err and "not-the-password" not in err, err
    no_database = url.set(database="c2c_no_such_database").render_as_string(hide_password=False)
    err = _one_line_error(
        capsys, ["supervised_unet", "learning_rate", *_sweep_args(tmp_path), f"storage={no_database}"]
    )
    assert 'database "c2c_no_such_database" does not exist' in err, err
    assert not (tmp_path / "runs").exists()


def test_submit_sweep_warns_when_the_password_would_land_in_the_job_script(
    postgres_url, tmp_path, monkeypatch, caplog
):
    import sqlalchemy

    monkeypatch.setattr(SUB, "sbatch", lambda path, *options: "4242")
    args = [f"run.root={tmp_path}"]
    SUB.submit_sweep("supervised_unet", "learning_rate", 2, [*args, f"storage={postgres_url}"])
    assert "password is written into" in caplog.text and "~/.pgpass or PGPASSWORD" in caplog.text
    caplog.clear()
    url = sqlalchemy.engine.make_url(postgres_url)
    monkeypatch.setenv("PGPASSWORD", url.password)
    SUB.submit_sweep("supervised_unet", "learning_rate", 2, [*args, f"storage={_without_password(url)}"])
    assert "password" not in caplog.text, "no warning for a URL without a password"


@pytest.mark.slow
def test_password_from_pgpassword_and_a_rerun_adds_nothing(postgres_url, tmp_path, monkeypatch):
    """The recommended shape: no password in the URL, libpq reads PGPASSWORD (or ~/.pgpass)."""
    import sqlalchemy

    url = sqlalchemy.engine.make_url(postgres_url)
    monkeypatch.setenv("PGPASSWORD", url.password)
    bare = _without_password(url)
    assert f":{url.password}@" not in bare
    args = _sweep_args(tmp_path, "trials=2", f"storage={bare}")
    S.run_sweep("supervised_unet", "learning_rate", args)
    study = _load_study(postgres_url, tmp_path)
    assert len(study.get_trials(states=DONE)) == 2
    S.run_sweep("supervised_unet", "learning_rate", args)
    assert len(study.get_trials()) == 2, "a finished study gets no new trial"
    assert not (tmp_path / "runs" / "sweeps" / STUDY / "study.db").exists(), (
        "no SQLite file beside the trials"
    )


# ----------------------------------------------------------------------------- workers that share, die and
# retry
def _worker(tmp_path: Path, storage: str, index: int, trials: int) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"worker-{index}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "lightning_app.sweep",
        "supervised_unet",
        "learning_rate",
        *_sweep_args(tmp_path, f"trials={trials}", f"storage={storage}", "heartbeat=1"),
    ]
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), log


def _started(logs) -> list[tuple[int, str]]:
    """(trial number, log name) for every 'trial N: started' line of the workers' logs."""
    found = []
    for log in logs:
        text = Path(log).read_text() if Path(log).exists() else ""
        found += [
            (int(n), Path(log).name) for n in re.findall(r"^trial (\d+): started by worker", text, re.M)
        ]
    return found


def _training(tmp_path: Path, trial: int):
    """True once the trial's run has written its config, i.e. it is training."""
    return (tmp_path / "runs" / "sweeps" / STUDY / f"trial_{trial:03d}" / "version_0" / "config.yaml").is_file


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _check_shared_study(study: optuna.Study, trials: int, killed_trial: int, logs, sweep_dir: Path):
    """Exactly ``trials`` done, each trial run by one worker once, the killed one failed and retried."""
    by_number = {t.number: t for t in study.get_trials()}
    done = [t for t in by_number.values() if t.state in DONE]
    assert len(done) == trials, {n: t.state.name for n, t in by_number.items()}
    assert by_number[killed_trial].state == TrialState.FAIL, (
        "the killed worker's trial is failed by its heartbeat"
    )
    retries = [
        t for t in done if t.system_attrs.get("failed_trial") == killed_trial
    ]  # set by Optuna's retry callback
    assert len(retries) == 1 and retries[0].params == by_number[killed_trial].params, (
        "the killed trial's values ran again, once, to the end"
    )
    numbers = [n for n, _ in _started(logs)]
    assert sorted(numbers) == sorted(set(numbers)), f"a trial was started twice: {sorted(numbers)}"
    assert set(numbers) == set(by_number), "every trial in the study was started by a worker, and logged"
    for t in done:
        runs = sorted(p.name for p in (sweep_dir / f"trial_{t.number:03d}").iterdir())
        assert runs == ["version_0"], f"trial {t.number} trained more than once: {runs}"
    first = [tuple(sorted(by_number[n].params.items())) for n in range(3)]
    assert len(set(first)) > 1, "workers that start together draw their own values (per-trial seeds)"


def _load_study(storage: str, tmp_path: Path) -> optuna.Study:
    return optuna.load_study(
        study_name=STUDY, storage=ST.open_storage(ST.parse(storage, tmp_path), heartbeat_s=1)
    )


def _storage_for(kind: str, tmp_path: Path, request) -> str:
    if kind == "journal":
        return f"journal://{tmp_path / 'shared' / 'study.journal'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_three_workers_share_one_study_and_retry_a_killed_workers_trial(kind, tmp_path, request):
    storage = _storage_for(kind, tmp_path, request)
    (tmp_path / "shared").mkdir()
    trials = 5
    workers = [_worker(tmp_path, storage, i, trials) for i in range(3)]
    logs = [log for _, log in workers]
    try:
        # Kill a worker (SIGKILL: no clean-up, as when a node dies) while its first trial trains.
        killed_trial, killed_log = _wait_for(lambda: _started(logs)[:1], 180, "a worker to start a trial")[0]
        _wait_for(_training(tmp_path, killed_trial), 120, f"trial {killed_trial} to start training")
        victim = workers[[log.name for log in logs].index(killed_log)][0]
        victim.send_signal(signal.SIGKILL)
        for proc, log in workers:
            proc.wait(timeout=300)
            assert proc is victim or proc.returncode == 0, log.read_text()[-3000:]
    finally:
        for proc, _ in workers:
            proc.kill()

    study = _load_study(storage, tmp_path)
    sweep_dir = tmp_path / "runs" / "sweeps" / STUDY
    _check_shared_study(study, trials, killed_trial, logs, sweep_dir)
    count = len(study.get_trials())
    rows = S.run_sweep(
        "supervised_unet", "learning_rate", _sweep_args(tmp_path, f"trials={trials}", f"storage={storage}")
    )
    assert len(study.get_trials()) == count, "a re-run of a finished study adds nothing"
    assert sum(r["state"] in ("COMPLETE", "PRUNED") for r in rows) == trials


# ----------------------------------------------------------------------------- a Slurm job array on
# PostgreSQL
def _job_state(job: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def slurm():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm_single_node.sh")], capture_output=True, text=True
    )
    if done.returncode == 3:
        pytest.skip(f"no Slurm here: {done.stderr.strip() or done.stdout.strip()}")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_make_submit_sweep_array_on_postgresql_retries_a_killed_task(
    slurm, postgres_url, tmp_path, monkeypatch
):
    import sqlalchemy

    url = sqlalchemy.engine.make_url(postgres_url)
    bare = _without_password(url)  # the password travels in PGPASSWORD, never in the job script
    trials = 4
    args = " ".join(_sweep_args(tmp_path, f"trials={trials}", f"storage={bare}", "heartbeat=1"))
    env = {**os.environ, "PGPASSWORD": url.password, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # -o: the test runs in this interpreter's environment and never re-runs `make setup`.
    done = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            ".venv/.installed",
            "submit-sweep",
            f"PY={sys.executable}",
            "EXP=supervised_unet",
            "SWEEP=learning_rate",
            "WORKERS=2",
            "GPUS_PER_NODE=0",
            "CPUS_PER_TASK=1",
            "TIME=00:15:00",
            f"ARGS={args}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    job = re.search(r"submitted job (\d+)", done.stdout).group(1)
    sweep_dir = tmp_path / "runs" / "sweeps" / STUDY
    logs = [sweep_dir / f"worker-{job}_{task}.out" for task in (0, 1)]
    try:
        killed_trial, killed_log = _wait_for(
            lambda: _started(logs)[:1], 240, "an array task to start a trial"
        )[0]
        _wait_for(_training(tmp_path, killed_trial), 120, f"trial {killed_trial} to start training")
        task = killed_log.removesuffix(".out").rsplit("_", 1)[1]
        subprocess.run(["scancel", "--signal=KILL", "--full", f"{job}_{task}"], check=True)
        _wait_for(lambda: not _job_state(job), 300, "the array to finish")
    finally:
        subprocess.run(["scancel", job], capture_output=True)

    study = _load_study(postgres_url, tmp_path)
    _check_shared_study(study, trials, killed_trial, logs, sweep_dir)
    assert not (sweep_dir / "study.db").exists(), "the array used the PostgreSQL study, not SQLite"
    assert f":{url.password}@" not in (sweep_dir / "submit-sweep.sbatch").read_text(), (
        "no password in the job script"
    )
    count = len(study.get_trials())
    monkeypatch.setenv("PGPASSWORD", url.password)
    S.run_sweep("supervised_unet", "learning_rate", args.split())
    assert len(study.get_trials()) == count, "a re-run of a finished study adds nothing"
