"""Fixtures: a webhook secret and a real local webhook endpoint (tests/hook_server.py)."""
from __future__ import annotations

import pytest

from hook_server import HookServer, new_secret


@pytest.fixture
def secret():
    return new_secret()


@pytest.fixture
def server(secret):
    srv = HookServer([secret]).start()
    yield srv
    srv.stop()
