"""`straycode dispatch --from-topic`: alerts on a real Kafka-wire broker (Tansu) reach a real
signed webhook endpoint once, across dispatcher restarts, and bad messages become notices."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from alert_factory import make_alert
from straycode.detector.ocsf import render_alert

pytestmark = pytest.mark.broker
SECRET = "STRAYCODE_TEST_TOPIC_SECRET"


def _dispatch(tmp_path, config, secret):
    env = dict(os.environ, **{SECRET: secret})
    return subprocess.run([sys.executable, "-m", "straycode.cli", "dispatch", "--from-topic",
                           "--idle-exit", "3", "--timeout", "20", "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=180)


def test_dispatch_follows_alert_topic_exactly_once(tmp_path, tansu, server, secret):
    topic = f"alerts-{tmp_path.name}"[:60]
    admin = KafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "kafka": {"broker": tansu.url, "topics": {"alerts": topic}},
        "hooks": {"outbox": str(tmp_path / "outbox.sqlite3"), "dead_letter": str(tmp_path / "dead.jsonl"),
                  "secret_env": SECRET, "retry_schedule_s": [0, 0.01, 0.02, 0.05],
                  "endpoints": [{"name": "iam", "url": server.url, "min_severity": "high",
                                 "actions": ["force_password_reset", "revoke_sessions"]}]}}))
    producer = KafkaProducer(bootstrap_servers=tansu.bootstrap)
    first = make_alert(code_event_id="code-1", user_id="u-1")
    producer.send(topic, key=b"u-1", value=json.dumps(render_alert(first, "ocsf")).encode())
    producer.send(topic, key=b"u-9", value=b"{not json")
    producer.flush()

    run = _dispatch(tmp_path, config, secret)
    assert run.returncode == 0, run.stderr
    assert sorted(server.actions_accepted()) == ["force_password_reset", "revoke_sessions"]
    notices = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [n["kind"] for n in notices] == ["bad_alert"] and f"{topic}/" in notices[0]["where"]
    assert secret not in run.stdout + run.stderr

    second = make_alert(code_event_id="code-2", user_id="u-2")
    producer.send(topic, key=b"u-2", value=json.dumps(render_alert(second, "native")).encode())
    producer.flush()
    producer.close()
    again = _dispatch(tmp_path, config, secret)          # restart: resumes from saved positions
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["queued"] == 2
    users = sorted(seen.payload["data"]["user_id"] for seen in server.requests if seen.verified)
    assert users == ["u-1", "u-1", "u-2", "u-2"]
    assert set(server.accepted.values()) == {1}
