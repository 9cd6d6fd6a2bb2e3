"""Where a sweep's Optuna study lives, and the lock its workers take to claim a trial.

The sweep file's ``storage`` field says where:

    null                                     SQLite beside the trials: runs/sweeps/<EXP>-<SWEEP>/study.db
                                             (workers on one machine)
    postgresql://user@host:5432/database     a PostgreSQL server (the [postgres] extra's psycopg driver);
                                             workers on any number of nodes
    journal                                  Optuna's journal file beside the trials (study.journal)
    journal:///shared/sweeps/name.journal    a journal file at that absolute path on a filesystem every
                                             worker mounts (no server needed)

Any other SQLAlchemy URL (sqlite:///path.db, mysql+pymysql://...) is handed to Optuna as it is.
``check`` reaches the server or the folder and creates nothing, so a bad storage fails in one line
before a run directory, a study or a job exists; ``open_storage`` then builds the Optuna storage with
heartbeats, so a trial whose worker died is failed and queued again. Passwords never appear in a
message: URLs are shown through ``masked``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the interface Optuna's optimize loop beats through
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import TrialState

from lightning_app.config import ConfigError

SHAPES = (
    "null (SQLite beside the trials), postgresql://user@host:5432/database, journal, "
    "or journal:///absolute/path/study.journal"
)
CONNECT_TIMEOUT_S = 10
RETRIES = 2  # a trial whose worker died is queued again at most this often
HEARTBEAT_KEY = "c2c:heartbeat"  # journal trials' system attribute: the worker's last beat (epoch seconds)
_PASSWORD = re.compile(r"(://[^:/@]*):[^/]*@")  # greedy: a password may hold an unescaped @


class StorageError(ConfigError):
    """The study's storage is malformed or cannot be reached; the message names it, password masked."""


def masked(url: str) -> str:
    """The URL with its password replaced by ***, even where the URL cannot be parsed."""
    return _PASSWORD.sub(r"\1:***@", url)


@dataclass(frozen=True)
class StudyStorage:
    kind: str  # "sqlite", "database" (a server) or "journal"
    url: str  # what Optuna gets (journal: the file's path); may hold a password: never print it
    shown: str  # for messages
    in_sweep_dir: bool = False  # the file sits in the sweep's own folder, which the sweep makes

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgresql")

    @property
    def file(self) -> Path | None:
        """The study's file (SQLite or journal), if it has one."""
        if self.kind == "journal":
            return Path(self.url)
        if self.kind == "sqlite" and self.url.startswith("sqlite:///") and self.url != "sqlite:///:memory:":
            return Path(self.url.removeprefix("sqlite:///"))
        return None


def parse(spec: str | None, sweep_dir: Path) -> StudyStorage:
    """The sweep's ``storage`` field -> what it names. Pure: reads and creates nothing."""
    spec = "" if spec is None else str(spec).strip()
    if spec in ("", "null"):
        path = sweep_dir / "study.db"
        return StudyStorage("sqlite", f"sqlite:///{path}", str(path), in_sweep_dir=True)
    if spec == "journal":
        path = sweep_dir / "study.journal"
        return StudyStorage("journal", str(path), f"journal file {path}", in_sweep_dir=True)
    if spec.startswith("journal"):
        path = spec.removeprefix("journal://") if spec.startswith("journal://") else ""
        if not path.startswith("/"):
            raise StorageError(
                f"storage {spec!r}: a journal needs an absolute path on a filesystem every worker "
                f"mounts, journal:///shared/sweeps/study.journal (three slashes), or just 'journal' "
                f"for one beside the trials"
            )
        return StudyStorage("journal", path, f"journal file {path}")
    return _database(spec)


def _database(spec: str) -> StudyStorage:
    import sqlalchemy

    try:
        url = sqlalchemy.engine.make_url(spec)
        url.port  # noqa: B018 - a port that is not a number fails here, not at the first connection
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise StorageError(f"storage {masked(spec)!r} is not a URL Optuna can use; give {SHAPES}") from None
    shown = url.render_as_string(hide_password=True)
    if url.drivername in ("postgres", "postgresql"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2; the [postgres] extra installs psycopg 3.
        url = url.set(drivername="postgresql+psycopg")
    try:
        url.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        raise StorageError(
            f"storage {shown}: unknown database kind {url.drivername!r}; give {SHAPES}"
        ) from None
    kind = "sqlite" if url.get_backend_name() == "sqlite" else "database"
    return StudyStorage(kind, url.render_as_string(hide_password=False), shown)


def check(storage: StudyStorage) -> None:
    """Reach the storage the way a worker will, creating nothing; a StorageError names what is wrong."""
    if storage.file is not None:
        if storage.file.is_dir():
            raise StorageError(
                f"storage {storage.shown}: {storage.file} is a folder; name a file in it, "
                f"e.g. {storage.file / ('study' + (storage.file.suffix or '.journal'))}"
            )
        folder = storage.file.parent
        if storage.in_sweep_dir and not folder.exists():
            return
        if not folder.is_dir():
            raise StorageError(f"storage {storage.shown}: the folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise StorageError(f"storage {storage.shown}: the folder {folder} is not writable")
    elif storage.kind == "database":
        engine = _engine(storage, pool=False)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except Exception as exc:  # every driver has its own error classes; they all say what went wrong
            raise StorageError(f"cannot reach the study database {storage.shown}: {_reason(exc)}") from None
        finally:
            engine.dispose()


def _engine(storage: StudyStorage, pool: bool = True):
    import sqlalchemy

    try:
        return sqlalchemy.create_engine(
            storage.url,
            **_engine_kwargs(storage),
            **({} if pool else {"poolclass": sqlalchemy.pool.NullPool}),
        )
    except ImportError as exc:
        extra = (
            "[postgres] extra (make setup, or pip install -c constraints.txt -e '.[postgres]')"
            if storage.is_postgresql
            else f"driver '{exc.name}'"
        )
        raise StorageError(
            f"storage {storage.shown}: the database driver is not installed; install the {extra}"
        ) from None
    except Exception as exc:
        raise StorageError(f"storage {storage.shown}: {_reason(exc)}") from None


def _engine_kwargs(storage: StudyStorage) -> dict:
    if not storage.is_postgresql:
        return {}
    # Trials run for hours between two writes: a connection the server or a firewall dropped meanwhile is
    # replaced (pre-ping) instead of failing the trial's final write.
    return {
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "c2c-sweep"},
    }


def _reason(exc: BaseException) -> str:
    """The driver's own words, on one line (libpq spreads a hint over a second, indented line)."""
    text = str(getattr(exc, "orig", None) or exc).split("\n(Background on this error", 1)[0]
    text = text.removeprefix("connection failed: ")
    return masked("; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip()))


def open_storage(storage: StudyStorage, heartbeat_s: int) -> optuna.storages.BaseStorage:
    """The Optuna storage, heartbeats on: a running trial silent for 2 x heartbeat_s is failed and queued
    again."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
    if storage.kind == "journal":
        return HeartbeatJournalStorage(storage.url, heartbeat_s, retry)
    kwargs = dict(
        engine_kwargs=_engine_kwargs(storage),
        heartbeat_interval=heartbeat_s,
        grace_period=2 * heartbeat_s,
        heartbeat_stale_trial_callback=retry,
    )
    # Workers that start together on an empty database would all create Optuna's tables at once (and
    # collide); PostgreSQL lets one do it while the others wait.
    with _advisory_lock(storage, "optuna-schema") if storage.is_postgresql else contextlib.nullcontext():
        try:
            return RDBStorage(storage.url, **kwargs)
        except Exception as exc:
            raise StorageError(f"cannot set up the study in {storage.shown}: {_reason(exc)}") from None


# ----------------------------------------------------------------------------- claiming a trial
@contextlib.contextmanager
def _advisory_lock(storage: StudyStorage, name: str):
    """A PostgreSQL session lock; it goes with the connection, so a worker that dies holding it frees it."""
    key = zlib.crc32(f"c2c-sweep:{name}".encode()) - 2**31  # the signed 32-bit key PostgreSQL takes
    engine = _engine(storage, pool=False)  # a pooled connection would keep the session, and the lock, alive
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
    finally:
        engine.dispose()


@contextlib.contextmanager
def _file_lock(path: Path):
    """flock on one machine (SQLite's case): the kernel frees it when its holder dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _shared_file_lock(path: Path):
    """An exclusive-create lock file, atomic on NFSv3+ and the cluster filesystems; a dead holder's lock is
    broken after 30 s (Optuna's own journal lock, on a file of its own)."""
    lock = JournalFileOpenLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def claim_lock(storage: StudyStorage, study_name: str):
    """The lock a worker holds from counting the study's trials until its new trial is RUNNING, so two
    workers never both start the last one (a context manager)."""
    if storage.is_postgresql:
        return _advisory_lock(storage, f"claim:{study_name}")
    if storage.kind == "journal":
        return _shared_file_lock(Path(f"{storage.url}.claim"))
    if storage.file is not None:
        return _file_lock(Path(f"{storage.file}.claim"))
    return contextlib.nullcontext()  # another server (MySQL, ...): workers may overshoot by one trial each


# ----------------------------------------------------------------------------- journal with heartbeats
class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal storage on a shared file, with the heartbeats its RDB storage has and it lacks.

    A running trial's worker writes the time into the trial every ``interval`` seconds; a running trial
    whose last beat is older than twice that is stale. The times come from the workers' clocks, so the
    nodes' clocks must agree (NTP) to well within the interval.
    """

    def __init__(self, path: str, interval: int, stale_callback) -> None:
        # Open lock: O_EXCL creation is atomic on NFSv3+ and on Lustre/GPFS/BeeGFS (symlinks are not
        # everywhere).
        super().__init__(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
        self._interval = interval
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_KEY, time.time())
        except UpdateFinishedTrialError:
            pass  # another worker already failed this trial as stale; its retry runs elsewhere

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # A queued retry carries its failed original's last beat: it counts from its own start, too.
            beats = [
                trial.system_attrs.get(HEARTBEAT_KEY),
                trial.datetime_start and trial.datetime_start.timestamp(),
            ]
            beat = max((b for b in beats if b is not None), default=None)
            if beat is not None and now - beat > 2 * self._interval:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int:
        return self._interval

    def get_heartbeat_stale_trial_callback(self):
        return self._stale_callback
