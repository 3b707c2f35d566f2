"""One source for the shared rules (detector/rules.py): the detector's policy and the hooks
dispatcher agree on severity order and on which actions need a proven password."""
from __future__ import annotations

import yaml

from alert_factory import make_alert
from straycode.detector import rules
from straycode.detector.policy import Policy
from straycode.hooks.policy import HookPolicy
from straycode.settings import load_settings


def test_both_sides_use_the_one_rules_module():
    from straycode.detector import policy
    from straycode.hooks import dispatcher
    from straycode.hooks import policy as hooks_policy
    assert policy.SEVERITY_RANK is rules.SEVERITY_RANK is hooks_policy.SEVERITY_RANK
    assert policy.GUARDED is rules.PASSWORD_ACTIONS
    assert dispatcher.LOCKOUT_ACTIONS is rules.LOCKOUT_ACTIONS


def test_policy_file_cannot_unguard_revoke_sessions_in_the_hooks(tmp_path):
    """A --config policy with `password_actions: []` must not let the hooks automate
    revoke_sessions for an alert whose flow proved no password (the detector already
    refused it; the hooks are the second line)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"policy": {"rules": [], "password_actions": []}}))
    settings = load_settings(cfg, env={})
    settings["hooks"]["endpoints"] = [{"name": "iam", "url": "http://127.0.0.1:9/h",
                                       "actions": sorted(rules.ALERT_ACTIONS)}]
    hook = HookPolicy.from_settings(settings)
    plan = hook.plan(make_alert(flow="no_password", severity="critical",
                                actions=["revoke_sessions", "notify_user"]))
    assert [p.action for p in plan.deliveries] == ["notify_user"]
    assert [a for a, _ in plan.refused] == ["revoke_sessions"]
    # and the detector's policy gives the same answer for the same hostile file
    assert Policy(settings["policy"]).guarded >= rules.PASSWORD_ACTIONS

