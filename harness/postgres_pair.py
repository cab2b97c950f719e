"""A PostgreSQL primary and its streaming standby (``pg_basebackup``), on loopback, from
Debian's PostgreSQL binaries: for the ledger's failover tests and benchmark. The standby
can be made to fall behind (its replication stopped, as a lagging or cut-off standby
is), the primary SIGKILLed with every backend (a lost machine), and the standby promoted.

PostgreSQL refuses to run as root: as root, its commands run as the ``postgres`` user,
on data under a folder that user owns."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from harness.processes import free_port, wait_until

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
DATABASE = "gbq"


def postgres_binaries() -> Path | None:
    """Debian's newest PostgreSQL ``bin`` folder, if installed."""
    return next((folder for folder in BINARIES if (folder / "pg_basebackup").exists()), None)


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Server:
    """One ``postgres`` process on a data folder; SIGKILL takes every backend with it."""

    def __init__(self, bin_dir: Path, data: Path, port: int) -> None:
        self.bin_dir, self.data, self.port = bin_dir, data, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        log = (self.data.parent / f"{self.data.name}.log").open("ab")  # the child keeps it
        command = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.data),  # its socket beside its data, not /run
            "-c", "listen_addresses=127.0.0.1",
            "-c", "wal_level=replica",
            "-c", "max_wal_senders=5",
            "-c", "hot_standby=on",
            "-c", "wal_keep_size=256MB",
            "-c", "max_connections=60",
            "-c", "logging_collector=off",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            _as_postgres(command),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group: kill() reaches every backend
        )
        log.close()
        wait_until(self.answers, timeout_s=30, what=f"PostgreSQL on port {self.port}")
        return self

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=2)

    def answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            with self.connect() as connection:
                connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def in_recovery(self) -> bool:
        with self.connect() as connection:
            row = connection.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend: what the standby had not received is
        gone with it."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None


class PostgresPair:
    """A primary and a streaming standby; ``url`` names both, writes go to the primary."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or postgres_binaries()
        if found is None:
            raise RuntimeError("PostgreSQL's binaries are not installed (postgresql package)")
        self.bin_dir = found
        # Not under pytest's folder: only root may enter that, and postgres must
        self.folder = Path(tempfile.mkdtemp(prefix="gbq-pg-pair-"))
        self.folder.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.primary = Server(self.bin_dir, self.folder / "primary", free_port())
        self._run([str(self.bin_dir / "initdb"), "-D", str(self.primary.data), "-U", "postgres",
                   "--auth=trust", "--no-sync", "-E", "UTF8"])  # fmt: skip
        with (self.primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self.primary.start()
        with self.primary.connect() as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        self.standby = Server(self.bin_dir, self.folder / "standby", free_port())
        self._run([str(self.bin_dir / "pg_basebackup"), "-h", "127.0.0.1",
                   "-p", str(self.primary.port), "-U", "postgres", "-D", str(self.standby.data),
                   "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"])  # fmt: skip
        self.standby.start()
        wait_until(self.streaming, timeout_s=30, what="the standby to stream")

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(_as_postgres(command), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {done.stderr[-2000:]}")

    @property
    def url(self) -> str:
        """Both hosts, libpq's way: whichever takes writes is the ledger."""
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary.port},"
            f"127.0.0.1:{self.standby.port}/{DATABASE}"
        )

    def streaming(self) -> bool:
        with self.primary.connect() as connection:
            rows = connection.execute(
                "SELECT state FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchall()
        return bool(rows)

    def stop_replication(self) -> None:
        """The standby stops receiving (a lagging or cut-off standby): whatever the primary
        commits from now on, a promoted standby will not have."""
        with self.standby.connect() as connection:
            connection.execute("ALTER SYSTEM SET primary_conninfo = ''")
            connection.execute("SELECT pg_reload_conf()")
        wait_until(lambda: not self.streaming(), timeout_s=30, what="replication to stop")

    def promote(self) -> None:
        with self.standby.connect() as connection:
            connection.execute("SELECT pg_promote(true, 30)")
        wait_until(lambda: not self.standby.in_recovery(), timeout_s=30, what="the promotion")

    def stop(self) -> None:
        self.primary.kill()
        self.standby.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
