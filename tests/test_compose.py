"""docker-compose.yml is valid (as docker-compose itself parses it) and wires what the
workers need: KRaft Kafka, every configured topic created with the tables' partition count,
two workers with their own web ports and data dirs."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from straycode.settings import load_settings
from straycode.streams.topics import all_topic_names

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose binary not installed")
    done = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_kafka_runs_kraft(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "healthcheck" in kafka


def test_topic_job_creates_every_configured_topic(compose):
    kcfg = load_settings(env={})["kafka"]
    script = " ".join(compose["services"]["topics"]["command"])
    created = set(re.findall(r"straycode\.[\w.-]+", script))
    assert created == set(all_topic_names(kcfg))
    assert f"--partitions {kcfg['partitions']}" in script


def test_two_workers_with_own_ports_and_datadirs(compose):
    workers = {n: s for n, s in compose["services"].items() if n.startswith("worker")}
    assert len(workers) == 2
    ports = {s["environment"]["STRAYCODE__KAFKA__WEB_PORT"] for s in workers.values()}
    dirs = {s["environment"]["STRAYCODE__KAFKA__DATADIR"] for s in workers.values()}
    assert len(ports) == 2 and len(dirs) == 2
    for service in workers.values():
        assert service["environment"]["STRAYCODE__KAFKA__BROKER"] == "kafka://kafka:9092"
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert any(v.startswith("geoip:/geoip") for v in service["volumes"])
        assert service["command"][0] == "worker"
    assert (ROOT / "Dockerfile").is_file()
    # every worker setting given in compose is a real setting (load_settings rejects unknown keys)
    load_settings(env={k: v for k, v in next(iter(workers.values()))["environment"].items()})


def test_dispatcher_reads_alert_topic_with_a_valid_hooks_config(compose):
    service = compose["services"]["dispatcher"]
    assert service["command"][:2] == ["dispatch", "--from-topic"]
    env = {k: v for k, v in service["environment"].items() if k.startswith("STRAYCODE__")}
    config = ROOT / "config" / "hooks.example.yaml"
    settings = load_settings(config, env=env)            # rejects unknown keys
    assert settings["hooks"]["endpoints"] and settings["hooks"]["dry_run"] is True
    assert any(v.endswith(":/outbox") or ":/outbox:" in v for v in service["volumes"])
