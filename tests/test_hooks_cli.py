"""`straycode dispatch` over a JSONL alert file and the example `hook-receiver` endpoint."""
from __future__ import annotations

import json
import threading
import time

import yaml

from alert_factory import make_alert
from hook_server import free_port, new_secret
from hooks_helpers import SECRET_ENV, dead_letters, hook_settings, iam
from straycode import cli
from straycode.detector.ocsf import render_alert
from straycode.hooks import Dispatcher, dispatch_cli
from straycode.hooks.receiver import make_server


def _config(tmp_path, url, **extra):
    hooks = {"outbox": str(tmp_path / "outbox.sqlite3"), "dead_letter": str(tmp_path / "dead.jsonl"),
             "retry_schedule_s": [0, 0.01, 0.02, 0.05], "secret_env": SECRET_ENV,
             "endpoints": [iam(url)], **extra}
    path = tmp_path / "straycode.yaml"
    path.write_text(yaml.safe_dump({"hooks": hooks}))
    return str(path)


def test_dispatch_cli_reads_native_and_both_and_dead_letters_garbage(tmp_path, server, secret,
                                                                     monkeypatch, capsys):
    monkeypatch.setenv(SECRET_ENV, secret)
    a1, a2 = make_alert(code_event_id="c1"), make_alert(code_event_id="c2", flow="no_password")
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("\n".join([
        json.dumps(render_alert(a1, "both")),
        json.dumps(a2),
        "{not json",
        json.dumps({"alert": "without an id"}),
        json.dumps(render_alert(make_alert(code_event_id="c3", actions=["notify_user"]), "ocsf")),
        json.dumps(render_alert(a1, "ocsf")),          # the same alert as line 1, as OCSF
        "",
    ]))
    argv = ["--config", _config(tmp_path, server.url), "dispatch", "--alerts", str(alerts),
            "--timeout", "10"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["queued"] == 5 and summary["delivered"] == 5 and summary["pending"] == 0
    assert server.actions_accepted() == {"force_password_reset": 1, "revoke_sessions": 1,
                                         "notify_user": 3}
    bad = [d for d in dead_letters(tmp_path) if d["kind"] == "bad_alert"]
    assert [d["where"].rsplit(":", 1)[1] for d in bad] == ["3", "4"]
    assert "neither" in bad[1]["reason"]
    # running again over the same file sends nothing twice
    assert cli.main(argv) == 0
    assert len(server.requests) == 5


def test_dispatch_cli_follow_picks_up_appended_alerts(tmp_path, server, secret, monkeypatch,
                                                      capsys):
    monkeypatch.setenv(SECRET_ENV, secret)
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text("")
    argv = ["--config", _config(tmp_path, server.url), "dispatch", "--alerts", str(alerts),
            "--follow", "--poll", "0.05", "--timeout", "5"]
    worker = threading.Thread(target=cli.main, args=(argv,), daemon=True)
    worker.start()
    try:
        with open(alerts, "a") as fh:
            line = json.dumps(make_alert(actions=["notify_user"]))
            fh.write(line[:40])                     # a half-written line is not read yet
            fh.flush()
            time.sleep(0.2)
            assert server.requests == []
            fh.write(line[40:] + "\n")
        deadline = time.monotonic() + 10
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dispatch_cli.STOP.set()
        worker.join(10)
    assert not worker.is_alive()
    assert server.actions_accepted() == {"notify_user": 1}


def test_example_receiver_verifies_dedups_and_rejects_forgeries(tmp_path, secret):
    acted = []
    port = free_port()
    receiver = make_server("127.0.0.1", port, [secret], on_action=acted.append)
    thread = threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        alert = make_alert()
        with Dispatcher(hook_settings(tmp_path / "a", [iam(url)]), env={SECRET_ENV: secret}) as d:
            d.submit(alert)
            assert d.run_until_idle(10)["delivered"] == 3
        assert sorted(e["action"] for e in acted) == ["force_password_reset", "notify_user",
                                                      "revoke_sessions"]
        assert {e["user_id"] for e in acted} == {"u-alice"}
        # another dispatcher (fresh outbox) re-sends the same alert: acknowledged, not re-acted
        with Dispatcher(hook_settings(tmp_path / "b", [iam(url)]), env={SECRET_ENV: secret}) as d:
            d.submit(alert)
            assert d.run_until_idle(10)["delivered"] == 3
        assert len(acted) == 3
        # a sender without the secret is refused (401 -> dead letter on the sender side)
        with Dispatcher(hook_settings(tmp_path / "c", [iam(url)]),
                        env={SECRET_ENV: new_secret()}) as d:
            d.submit(make_alert(code_event_id="forged"))
            assert d.run_until_idle(10)["dead"] == 3
        assert len(acted) == 3
        assert all(x["last_error"].startswith("HTTP 401") for x in dead_letters(tmp_path / "c"))
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_engine_alerts_drive_the_hooks(tmp_path, server, secret, geo_dbs):
    """Real detector output -> dispatcher -> real endpoint: the password-verified takeover
    gets a reset; the reset-flow request for bob only notifies; the update adds nothing new."""
    from test_ocsf_engine import _run
    _, alerts = _run(geo_dbs)
    with Dispatcher(hook_settings(tmp_path, [iam(server.url)]), env={SECRET_ENV: secret}) as d:
        queued = [d.submit(a) for a in alerts]
        d.run_until_idle(10)
    # kind=updated re-emits the same alert id with the same actions: nothing new to send
    assert [q for a, q in zip(alerts, queued) if a["kind"] == "updated"] == [0]
    got = {(r.payload["data"]["user_id"], r.payload["data"]["action"]) for r in server.requests}
    assert got == {("alice", "force_password_reset"), ("alice", "revoke_sessions"),
                   ("alice", "notify_user"), ("bob", "notify_user")}
