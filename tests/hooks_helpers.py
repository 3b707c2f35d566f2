"""Settings for dispatcher tests: real defaults, a tiny retry schedule, files under tmp_path."""
from __future__ import annotations

from straycode.settings import load_settings

SECRET_ENV = "STRAYCODE_TEST_WEBHOOK_SECRET"
FAST_SCHEDULE = [0, 0.01, 0.02, 0.05]       # 4 attempts within a tenth of a second


def schedule(attempts, delay=0.01):
    """A retry schedule of `attempts` attempts, `delay` seconds apart."""
    return [0] + [delay] * (attempts - 1)


def hook_settings(tmp_path, endpoints, **hooks):
    settings = load_settings(env={})
    settings["hooks"].update(
        outbox=str(tmp_path / "outbox.sqlite3"), dead_letter=str(tmp_path / "dead.jsonl"),
        retry_schedule_s=FAST_SCHEDULE, retry_jitter=0.0, timeout_s=2,
        secret_env=SECRET_ENV, endpoints=endpoints)
    breaker = hooks.pop("breaker", None)
    settings["hooks"].update(hooks)
    if breaker:
        settings["hooks"]["breaker"].update(breaker)
    return settings


def iam(url, actions=("force_password_reset", "revoke_sessions", "lock_account", "notify_user"),
        min_severity="low", name="iam"):
    return {"name": name, "url": url, "actions": list(actions), "min_severity": min_severity}


def dead_letters(tmp_path):
    import json
    path = tmp_path / "dead.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
