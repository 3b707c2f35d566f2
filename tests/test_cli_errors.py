"""Every user mistake is one line on stderr and exit status 2, never a traceback, for every
command: the real CLI in a subprocess, with the bad setting in a file or the environment."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMANDS = ("replay", "worker", "dispatch", "demo", "simulate", "evaluate", "train",
            "produce", "tail-alerts", "hook-receiver")


def straycode(args: list[str], cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRAYCODE")}
    return subprocess.run([sys.executable, "-m", "straycode.cli", *args], cwd=cwd,
                          env={**clean, **(env or {})}, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("straycode"), lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "events.jsonl").write_text("{}\n")
    (tmp_path / "not.mmdb").write_text("this is not a MaxMind database\n")
    return tmp_path


def args_for(command: str) -> list[str]:
    """Arguments a command needs to get as far as reading its settings."""
    return {"replay": ["replay", "events.jsonl", "--alerts", "a.jsonl", "--scores", "s.jsonl",
                       "--no-progress"],
            "dispatch": ["dispatch", "--alerts", "events.jsonl"],
            "demo": ["demo", "--out", "demo"],
            "simulate": ["simulate", "--out", "e.jsonl", "--labels", "l.jsonl", "--users", "2",
                         "--days", "1"],
            "evaluate": ["evaluate", "--labels", "events.jsonl", "--scores", "events.jsonl"],
            "train": ["train", "--scores", "events.jsonl", "--labels", "events.jsonl", "--out", "o"],
            "produce": ["produce", "events.jsonl", "--broker", "127.0.0.1:9"],
            "tail-alerts": ["tail-alerts", "--broker", "127.0.0.1:9", "--timeout", "1"],
            "hook-receiver": ["hook-receiver", "--port", "0"],
            "worker": ["worker", "--web-port", "0"]}[command]


# (command, environment, config file text or None, what the one line must say)
BAD_SETTINGS = [
    ("replay", {"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "abc"}, None,
     ["detector.verify_window_s", "'abc'", "environment variable STRAYCODE__DETECTOR__VERIFY_WINDOW_S",
      "expected a number >= 0"]),
    ("worker", {"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "-100"}, None,
     ["detector.verify_window_s", "-100", "STRAYCODE__DETECTOR__VERIFY_WINDOW_S", ">= 0"]),
    ("dispatch", {"STRAYCODE__DETECTOR__ALERT_MIN_SEVERITY": "extreme"}, None,
     ["detector.alert_min_severity", "'extreme'", "one of low, medium, high, critical"]),
    ("demo", {}, "detector: [1, 2\n",
     ["config file c.yaml", "not valid YAML", "line 2"]),
    ("simulate", {}, "detector:\n  verify_windw_s: 10\n",
     ["unknown setting 'detector.verify_windw_s'", "config file c.yaml"]),
    ("train", {"STRAYCODE__": "1"}, None,
     ["environment variable STRAYCODE__", "names no setting"]),
    ("produce", {}, "alerts:\n  format: xml\n",
     ["alerts.format", "'xml'", "config file c.yaml", "one of ocsf, native, both"]),
    ("tail-alerts", {"STRAYCODE__ALERTS__FORMAT": "xml"}, None,
     ["alerts.format", "STRAYCODE__ALERTS__FORMAT"]),
    ("hook-receiver", {"STRAYCODE__DETECTOR__SEVERITY__HIGH": "0.99"}, None,
     ["detector.severity.high = 0.99", "STRAYCODE__DETECTOR__SEVERITY__HIGH",
      "below detector.severity.critical = 0.97 (from defaults.yaml)"]),
    ("evaluate", {"STRAYCODE__DETECTOR__BOMBING_CODES": "[6, 3]"}, None,
     ["detector.bombing_codes[0] = 6", "at most detector.bombing_codes[1] = 3"]),
    ("dispatch", {}, "hooks:\n  endpoints:\n    - {name: iam, url: http://127.0.0.1:9/, "
                     "actions: [lock_account], min_severity: severe}\n",
     ["hooks.endpoints[0].min_severity", "'severe'", "config file c.yaml"]),
    ("replay", {}, "geoip:\n  network_kinds:\n    hosting_asns: []\n    hosting_orgs: ['(']\n"
                   "    vpn_orgs: []\n",
     ["geoip.network_kinds.hosting_orgs: bad pattern"]),
]


@pytest.mark.parametrize("command, env, config, says", BAD_SETTINGS, ids=[
    "replay-abc", "worker-negative", "dispatch-severity-name", "demo-malformed-yaml",
    "simulate-unknown-key", "train-bare-prefix", "produce-format-xml", "tail-alerts-format-xml",
    "hook-receiver-thresholds-unordered", "evaluate-warn-above-strong", "dispatch-endpoint-severity",
    "replay-network-kind-pattern"])
def test_a_bad_setting_is_one_line_and_exit_2(files, command, env, config, says):
    args = args_for(command)
    if config is not None:
        (files / "c.yaml").write_text(config)
        args = ["--config", "c.yaml", *args]
    line = one_line_error(straycode(args, files, env))
    for text in says:
        assert text in line, line


@pytest.mark.parametrize("command", ["evaluate", "worker"])
def test_a_missing_config_file(files, command):
    line = one_line_error(straycode([*args_for(command), "--config", "nope.yaml"], files))
    assert line == "straycode: config file nope.yaml: no such file"
    line = one_line_error(straycode(args_for(command), files, {"STRAYCODE_CONFIG": "gone.yaml"}))
    assert "config file gone.yaml (STRAYCODE_CONFIG): no such file" in line


GEOIP = [
    ("replay", ["--geoip-db", "not.mmdb"], None),
    ("replay", [], "geoip:\n  city_db: not.mmdb\n"),
    ("worker", [], "geoip:\n  city_db: not.mmdb\n"),
    ("simulate", ["--geoip-db", "not.mmdb"], None),
    ("demo", ["--geoip-db", "not.mmdb"], None),
]


assert {c for c, *_ in BAD_SETTINGS} | {c for c, *_ in GEOIP} == set(COMMANDS)   # all covered


@pytest.mark.parametrize("command, extra, config", GEOIP,
                         ids=[f"{c}-{'flag' if e else 'config'}" for c, e, _ in GEOIP])
def test_a_geoip_file_that_is_not_mmdb(files, command, extra, config):
    args = [*args_for(command), *extra]
    if config is not None:
        (files / "c.yaml").write_text(config)
        args = ["--config", "c.yaml", *args]
    line = one_line_error(straycode(args, files))
    assert "GeoIP database" in line and "not.mmdb" in line and "MaxMind DB" in line


@pytest.mark.parametrize("command", ["produce", "evaluate"])
def test_a_missing_input_file(files, command):
    args = [a if a != "events.jsonl" else "missing.jsonl" for a in args_for(command)]
    line = one_line_error(straycode(args, files))
    assert "missing.jsonl" in line
