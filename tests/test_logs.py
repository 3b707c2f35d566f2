"""Log lines cannot be forged: control characters from input (a user id with a newline or a
terminal escape) are escaped in every record the straycode commands write."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from alert_factory import make_alert
from straycode.logs import SafeFormatter, setup_logging

FORGED = "2026-01-01 00:00:00,000 CRITICAL straycode.hooks: all clear"
EVIL = f"u-evil\n{FORGED}\r\x1b[2J\x1b]0;pwned\x07\u2028x"


@pytest.fixture
def safe_root():
    handler = setup_logging(logging.INFO)
    yield
    logging.getLogger().removeHandler(handler)
    logging.getLogger("straycode").setLevel(logging.NOTSET)


def test_a_record_with_a_hostile_user_id_stays_one_line(safe_root, capsys):
    logging.getLogger("straycode.hooks").warning("not automating %s for user %s", "lock_account", EVIL)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\r" not in err and "\x1b" not in err and "\x07" not in err
    assert "\u2028" not in err
    assert "for user u-evil\\n2026-01-01 00:00:00,000 CRITICAL" in err
    assert "\\r\\x1b[2J\\x1b]0;pwned\\x07\\u2028x" in err
    assert not any(line.startswith(FORGED) for line in err.splitlines())


def test_a_traceback_cannot_carry_a_forged_record(safe_root, capsys):
    try:
        raise ValueError(f"bad user {EVIL}")
    except ValueError:
        logging.getLogger("straycode").exception("failed for %s", EVIL)
    lines = capsys.readouterr().err.splitlines()
    assert " ERROR straycode: failed for u-evil\\n" in lines[0]
    assert all(line.startswith("    ") for line in lines[1:])       # continuation, not a record
    assert not any("\x1b" in line for line in lines)


def test_the_faust_worker_handlers_get_the_safe_formatter():
    from straycode.streams.worker_cli import worker_class

    logger = logging.Logger("faust-root")
    logger.addHandler(logging.StreamHandler())
    worker = worker_class().__new__(worker_class())
    worker.on_setup_root_logger(logger, logging.WARNING)
    assert isinstance(logger.handlers[0].formatter, SafeFormatter)


def test_the_real_dispatch_command_escapes_what_it_logs(tmp_path):
    """End to end: `straycode dispatch` (dry run) logs the alert's user id."""
    alert = make_alert(user_id=EVIL)
    (tmp_path / "alerts.jsonl").write_text(json.dumps(alert) + "\n")
    (tmp_path / "c.yaml").write_text(
        "hooks:\n  dry_run: true\n  outbox: out.sqlite3\n  dead_letter: dead.jsonl\n"
        "  endpoints:\n    - {name: iam, url: 'http://127.0.0.1:9/h', actions: [notify_user]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAYCODE")}
    done = subprocess.run([sys.executable, "-m", "straycode.cli", "--config", "c.yaml", "dispatch",
                           "--alerts", "alerts.jsonl", "--timeout", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    would = [line for line in done.stderr.splitlines() if "would POST" in line]
    assert len(would) == 1 and "user u-evil\\n2026-01-01" in would[0]
    assert not any(line.startswith(FORGED) for line in done.stderr.splitlines())
    assert "\x1b" not in done.stderr
