"""Standard Webhooks signatures (https://www.standardwebhooks.com) via `standardwebhooks`.

The signing secrets come only from the environment variable named by hooks.secret_env;
several space-separated secrets are all used to sign, so a receiver holding either the old
or the new one verifies during a rotation. Nothing here ever formats a secret into a
message or repr.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timezone
from typing import Mapping

from standardwebhooks import Webhook

from straycode.settings import ConfigError


def message_id(*parts: str) -> str:
    """Deterministic webhook-id (the receiver's idempotency key), e.g. from alert_id+action."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    return f"msg_{digest}"


class Signer:
    """Signs a body with every configured secret."""

    def __init__(self, secrets: list[str], source: str = "secret"):
        if not secrets:
            raise ConfigError(f"no webhook secret in {source}")
        self._hooks = []
        self.count = 0
        for i, sec in enumerate(secrets, 1):
            raw = (sec[len("whsec_"):] if sec.startswith("whsec_") else sec).rstrip("=")
            try:
                decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if len(decoded) < 16:
                raise ConfigError(f"secret #{i} in {source} is not a whsec_<base64> key of at "
                                  "least 16 bytes")
            self._hooks.append(Webhook(sec))
        self.count = len(self._hooks)

    def __repr__(self) -> str:
        return f"Signer(<{self.count} secret(s)>)"

    @classmethod
    def from_env(cls, hooks_cfg: Mapping, env: Mapping[str, str]) -> "Signer":
        var = hooks_cfg.get("secret_env")
        if not var:
            raise ConfigError("hooks.secret_env must name the environment variable with the "
                              "webhook secret(s)")
        return cls((env.get(var) or "").split(), source=f"${var}")

    def headers(self, msg_id: str, body: str, now: float) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt (timestamp = now)."""
        ts = datetime.fromtimestamp(int(now), tz=timezone.utc)
        sigs = " ".join(h.sign(msg_id=msg_id, timestamp=ts, data=body) for h in self._hooks)
        return {"webhook-id": msg_id, "webhook-timestamp": str(int(now)),
                "webhook-signature": sigs}
