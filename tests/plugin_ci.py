"""Under CI=true a skipped test is a failed test: a missing dependency must not pass CI
silently (a plain `pip install -e '.[dev]'` without the GeoIP package once skipped every
simulator test). A test that may legitimately skip says so with
``@pytest.mark.allow_skip(reason="...")``. Loaded by conftest.py (pytest_plugins)."""
from __future__ import annotations

import os

import pytest


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_skip(reason): this test may skip even under CI=true")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not (_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    allowed = item.get_closest_marker("allow_skip")
    if allowed is not None and (allowed.kwargs.get("reason") or allowed.args):
        return
    why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    why = why.removeprefix("Skipped: ")
    report.outcome = "failed"            # at setup (skipif, a fixture) pytest shows an ERROR
    report.longrepr = (f"skipped under CI=true: {why}\n(install what it needs, e.g. with "
                       "`make install`, or mark it @pytest.mark.allow_skip(reason=...))")
