"""The CI rule (tests/plugin_ci.py), exercised by a real pytest run on a generated file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
import pytest

def test_passes():
    pass

@pytest.mark.skipif(True, reason="optional thing not installed")
def test_skips_by_mark():
    pass

def test_skips_in_body():
    pytest.skip("binary not installed")

@pytest.fixture
def needs_broker():
    pytest.skip("no broker")

def test_skips_in_fixture(needs_broker):
    pass

@pytest.mark.allow_skip(reason="only runs on Linux with docker")
def test_allowed_to_skip():
    pytest.skip("no docker")

@pytest.mark.xfail(reason="known bug", strict=False)
def test_expected_failure():
    assert False
'''


def run_sample(tmp_path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(TESTS)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "plugin_ci", "-rA", "-q",
                           "-p", "no:cacheprovider", "test_sample.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_under_ci_a_skip_fails_unless_allowed(tmp_path):
    done = run_sample(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    out = done.stdout
    # a skip at setup (skipif mark, fixture) becomes an error, one in the test body a failure
    assert "ERROR test_sample.py::test_skips_by_mark - skipped under CI=true: optional thing " \
           "not installed" in out, out
    assert "ERROR test_sample.py::test_skips_in_fixture - skipped under CI=true: no broker" in out
    assert "FAILED test_sample.py::test_skips_in_body - skipped under CI=true: binary not " \
           "installed" in out
    assert "SKIPPED [1] test_sample.py:" in out and ": no docker" in out   # allowed, with a reason
    assert "XFAIL test_sample.py::test_expected_failure" in out
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 2 errors" in out


def test_outside_ci_skips_stay_skips(tmp_path):
    done = run_sample(tmp_path, None)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 4 skipped, 1 xfailed" in done.stdout
