"""The settings schema describes every key, the defaults pass it, and what it rejects is
reported with the dotted key, where the value came from and what was expected."""
from __future__ import annotations

import fnmatch
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

from straycode.detector import rules
from straycode.settings import ConfigError, load_settings, schema

ROOT = Path(__file__).resolve().parent.parent


def _leaves(tree, path=()):
    """Dotted paths of every key in a YAML tree (list items as [])."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield path + (key,)
            yield from _leaves(value, path + (key,))
    elif isinstance(tree, list):
        for item in tree:
            yield from _leaves(item, path + ("[]",))


def _described(path) -> bool:
    node = schema()
    for part in path:
        while "$ref" in node:
            node = schema()["$defs"][node["$ref"].rsplit("/", 1)[1]]
        if part == "[]":
            node = node.get("items")
        else:
            node = (node.get("properties") or {}).get(part)
        if node is None:
            return False
    return True


def test_every_key_of_the_shipped_yaml_is_described_in_the_schema():
    shipped = yaml.safe_load((ROOT / "config" / "defaults.yaml").read_text())
    shipped["policy"] = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    hooks = yaml.safe_load((ROOT / "config" / "hooks.example.yaml").read_text())
    missing = [".".join(p) for tree in (shipped, hooks) for p in _leaves(tree) if not _described(p)]
    assert missing == []
    load_settings(ROOT / "config" / "hooks.example.yaml", env={})     # and they validate


def test_the_schema_knows_the_shared_rules():
    defs = schema()["$defs"]
    assert defs["severity"]["enum"] == list(rules.SEVERITIES)
    assert defs["action"]["enum"] == list(rules.ACTION_ORDER)
    assert set(defs["hook_action"]["enum"]) == rules.ALERT_ACTIONS | {rules.BREAKER_ACTION}
    assert defs["flow"]["enum"] == list(rules.FLOWS)


def test_the_schema_ships_with_the_package():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["straycode.config"]
    assert any(fnmatch.fnmatch("settings.schema.json", p) for p in patterns)
    assert files("straycode.config").joinpath("settings.schema.json").is_file()


@pytest.mark.parametrize("env, says", [
    ({"STRAYCODE__KAFKA__PARTITIONS": "0"}, "kafka.partitions = 0 (from environment variable "
                                            "STRAYCODE__KAFKA__PARTITIONS): expected an integer >= 1"),
    ({"STRAYCODE__KAFKA__SECURITY_PROTOCOL": "TLS"}, "expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"STRAYCODE__KAFKA__SASL_MECHANISM": "GSSAPI"}, "expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"STRAYCODE__KAFKA__STORE": "redis://"}, "kafka.store = 'redis://'"),
    ({"STRAYCODE__KAFKA__BROKER_HEARTBEAT_INTERVAL": "6"},
     "expected below kafka.broker_session_timeout = 6 (from defaults.yaml)"),
    ({"STRAYCODE__HOOKS__RETRY_SCHEDULE_S": "[]"}, "hooks.retry_schedule_s = []"),
    ({"STRAYCODE__HOOKS__BACKOFF_BASE_S": "600"}, "unknown setting 'hooks.backoff_base_s'"),
    ({"STRAYCODE__HOOKS__SECRET_ENV": "whsec_abc def"}, "expected the name of an environment variable"),
    ({"STRAYCODE__HOOKS__ENDPOINTS": "[{name: a, url: ftp://h/x, actions: [review]}]"},
     "hooks.endpoints[0].url = 'ftp://h/x'"),
    ({"STRAYCODE__HOOKS__ENDPOINTS": "[{name: a, url: 'http://h/', actions: [review]},"
                                     " {name: a, url: 'http://h/', actions: [review]}]"},
     "hooks.endpoints[1].name = 'a' (from environment variable STRAYCODE__HOOKS__ENDPOINTS): "
     "expected different from hooks.endpoints[0].name"),
    ({"STRAYCODE__DETECTOR__FANOUT_IP_USERS": "[3]"}, "expected a list of 2 items, each an integer >= 1"),
    ({"STRAYCODE__DETECTOR__LOCAL_ATTACKER_SHARE": "0"}, "expected a number > 0 and <= 1"),
    ({"STRAYCODE__DETECTOR__WEIGHTS__TERM_MIN": "5"}, "detector.weights.term_min = 5"),
    ({"STRAYCODE__DETECTOR__TERM_SCALE__FANOUT_IP": "lots"},
     "detector.term_scale.fanout_ip = 'lots' (from environment variable "
     "STRAYCODE__DETECTOR__TERM_SCALE__FANOUT_IP)"),
    ({"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "true"}, "detector.verify_window_s = True"),
    ({"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "[1"}, "STRAYCODE__DETECTOR__VERIFY_WINDOW_S: value is not valid YAML"),
    ({"STRAYCODE__POLICY__PASSWORD_ACTIONS": "[explode]"}, "policy.password_actions[0] = 'explode'"),
    ({"STRAYCODE__POLICY__RULES": "[{name: r, when: {flow: nope}, actions: [review]}]"},
     "policy.rules[0].when.flow = 'nope'"),
])
def test_bad_values_name_key_source_and_expectation(env, says):
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_a_policy_file_rule_is_checked_with_the_file_named(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("policy:\n  rules:\n    - name: x\n      when: {min_severity: huge}\n"
                    "      actions: [review]\n")
    with pytest.raises(ConfigError, match=r"policy.rules\[0\].when.min_severity = 'huge' "
                                          rf"\(from config file {path}\)"):
        load_settings(path, env={})


def test_several_problems_are_counted_on_the_one_line():
    with pytest.raises(ConfigError, match=r"\(and 1 more problem\(s\)\)$"):
        load_settings(env={"STRAYCODE__KAFKA__PARTITIONS": "0", "STRAYCODE__ALERTS__FORMAT": "xml"})
