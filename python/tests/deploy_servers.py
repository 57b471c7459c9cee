"""Start what docs/deploy.md puts around the gateway, as real processes on loopback: nginx with a
self-signed certificate, a Redis Cluster of three masters, a Redis master and replica watched by
a Sentinel."""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from servers import Server, free_port, start_redis, wait_pong

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


# -- TLS ---------------------------------------------------------------------------------------------


@dataclass
class Certificate:
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        """A client context that trusts only this certificate, and checks the host name."""
        return ssl.create_default_context(cafile=str(self.cert))


def self_signed(directory: Path) -> Certificate:
    """A certificate for localhost and 127.0.0.1, made by openssl as an operator would."""
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)


# -- nginx -------------------------------------------------------------------------------------------


class Nginx(Server):
    """nginx running deploy/nginx/signgate.conf, with its upstream servers, listen port and
    certificate paths replaced by the test's."""

    def __init__(self, directory: Path, backends: Sequence[int], cert: Certificate) -> None:
        self.directory = directory
        site = (DEPLOY / "nginx" / "signgate.conf").read_text()
        servers = re.findall(r"^ *server 127\.0\.0\.1:\d+;\n", site, re.M)
        assert servers, "deploy/nginx/signgate.conf has no 'server 127.0.0.1:PORT;' lines"
        site = site.replace(servers[0], "".join(f"    server 127.0.0.1:{p};\n" for p in backends), 1)
        for line in servers[1:]:
            site = site.replace(line, "", 1)
        port = free_port()
        site = _replace_once(site, "listen 443 ssl", f"listen 127.0.0.1:{port} ssl")
        site = _replace_once(site, "/etc/signgate/tls/fullchain.pem", str(cert.cert))
        site = _replace_once(site, "/etc/signgate/tls/privkey.pem", str(cert.key))
        (directory / "signgate.conf").write_text(site)
        temp_paths = "\n".join(f"    {kind}_temp_path {directory}/{kind}_temp;" for kind in TEMP_KINDS)
        # nginx's workers drop root to "nobody", who cannot reach a private temporary directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (directory / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\nerror_log stderr info;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{\n    access_log {directory}/access.log;\n{temp_paths}\n"
            f"    include {directory}/signgate.conf;\n}}\n"
        )
        argv = ["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf"), "-e", "stderr"]
        super().__init__("nginx", argv, port)
        self.url = f"https://localhost:{port}"
        self.cert = cert
        self._wait_tls()

    def _wait_tls(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen in {timeout} s:\n{self.output()}")

    def raw(self, request: bytes, timeout: float = 30) -> bytes:
        """Send exactly these bytes over TLS and read until the server closes."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as plain,
            self.cert.context().wrap_socket(plain, server_hostname="localhost") as conn,
        ):
            conn.sendall(request)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in deploy/nginx/signgate.conf"
    return text.replace(old, new)


# -- Redis Cluster -----------------------------------------------------------------------------------


class RedisCluster:
    """Three cluster-enabled masters on loopback, joined by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.nodes: list[Server] = []
        try:
            for i in range(3):
                # The cluster bus port is the client port + 10,000 unless given: give a free one.
                self.nodes.append(
                    start_redis(
                        "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf",
                        "--cluster-port", str(free_port()), "--cluster-node-timeout", "5000",
                        "--dir", str(directory), name=f"cluster-node-{i}",
                    )
                )  # fmt: skip
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while not all("cluster_state:ok" in cli(n.port, "CLUSTER", "INFO") for n in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok in 60 s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def owner(self, key: str) -> Server:
        """The node that serves ``key``'s slot."""
        slot = int(cli(self.nodes[0].port, "CLUSTER", "KEYSLOT", key))
        for node in self.nodes:
            if _serves(node, slot):
                return node
        raise AssertionError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _serves(node: Server, slot: int) -> bool:
    for line in cli(node.port, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return True
    return False


def cli(port: int, *command: str) -> str:
    """One redis-cli command against 127.0.0.1:port; its output."""
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *command], capture_output=True, text=True, timeout=30
    )
    return done.stdout.strip()


# -- Sentinel ----------------------------------------------------------------------------------------


class SentinelGroup:
    """A master, a replica of it, and a Sentinel that promotes the replica when the master dies."""

    SERVICE = "signgate-store"

    def __init__(self, directory: Path, down_after_ms: int = 2000) -> None:
        # A replica writes what it receives to its directory: keep that out of the working tree.
        self.master = start_redis("--dir", str(directory), name="master")
        self.replica: Server | None = None
        self.sentinel: Server | None = None
        try:
            self.replica = start_redis(
                "--replicaof", "127.0.0.1", str(self.master.port), "--dir", str(directory), name="replica"
            )
            port = free_port()
            conf = directory / "sentinel.conf"  # the Sentinel rewrites its file: it must be writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
            )
            self.sentinel = wait_pong(Server("sentinel", ["redis-sentinel", str(conf)], port))
            self.wait_in_sync()
        except BaseException:
            self.stop()
            raise

    def master_port(self) -> int:
        assert self.sentinel is not None
        return int(cli(self.sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE).split()[1])

    def wait_in_sync(self, timeout: float = 30) -> None:
        """Until the replica has every write the master has (replication is asynchronous)."""
        assert self.replica is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master = _replication(self.master.port)
            replica = _replication(self.replica.port)
            if replica.get("master_link_status") == "up" and replica.get("slave_repl_offset") == master.get(
                "master_repl_offset"
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the replica did not catch up in {timeout} s")

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            if server is not None:
                server.stop()


def _replication(port: int) -> dict[str, str]:
    info = cli(port, "INFO", "replication")
    return dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
