"""Automated responses: signed (Standard Webhooks) deliveries of alert actions to IAM
endpoints, from a durable outbox, behind guardrails and a lockout circuit breaker.
See docs/hooks.md."""
from straycode.hooks.dispatcher import Dispatcher, action_payload

__all__ = ["Dispatcher", "action_payload"]
