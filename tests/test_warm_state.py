"""State that outlives a run (#14): replay --state, backfill, the state directory's format,
refusals and atomic saves. Real simulator, real detector, real files, real RocksDB."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from straycode import statedir
from straycode.backfill import merged, run_backfill
from straycode.detector.state import UserState
from straycode.diskstore import DiskStore
from straycode.replay import run_replay
from straycode.settings import load_settings


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "straycode.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ, **(env or {})), timeout=300)


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> dict:
    """A simulated stream (300 users, 20 days) cut in two at a moment when a code has been
    issued and not yet entered: A (before), B (after), and the whole."""
    folder = tmp_path_factory.mktemp("warm")
    whole = folder / "all.jsonl"
    done = cli("simulate", "--users", "300", "--days", "20", "--seed", "7", "--out", str(whole),
               "--labels", str(folder / "labels.jsonl"))
    assert done.returncode == 0, done.stderr
    lines = whole.read_bytes().splitlines(keepends=True)
    events = [orjson.loads(x) for x in lines]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    # a code issued ~60% into the stream whose entry comes after it
    start = int(len(events) * 0.6)
    for i in range(start, len(events)):
        e = events[i]
        if e["type"] == "code_issued" and e.get("session_id") and any(
                f["type"] == "code_verified" and f.get("session_id") == e["session_id"]
                for f in events[i + 1:i + 40]) and events[i + 1]["ts"] > e["ts"]:
            cut = i + 1
            break
    a, b = folder / "a.jsonl", folder / "b.jsonl"
    a.write_bytes(b"".join(lines[:cut]))
    b.write_bytes(b"".join(lines[cut:]))
    return {"all": whole, "a": a, "b": b, "folder": folder, "lines": lines, "cut": cut}


def replay(tmp: Path, name: str, events: Path, *extra: str, env: dict | None = None) -> tuple:
    alerts, scores = tmp / f"{name}.alerts", tmp / f"{name}.scores"
    done = cli("replay", str(events), "--alerts", str(alerts), "--scores", str(scores),
               "--no-progress", *extra, env=env)
    assert done.returncode == 0, done.stderr
    return alerts.read_bytes(), scores.read_bytes(), done.stdout


def summary_value(stdout: str, key: str) -> str:
    return next(line.split(None, 1)[1] for line in stdout.splitlines()
                if line.split() and line.split()[0] == key)


def test_replay_a_then_b_is_one_replay_of_both(stream, tmp_path):
    """Outputs of A then B (each with --state) are byte for byte those of one run over A+B,
    including the code issued in A and entered in B (carried over, not flushed)."""
    state = tmp_path / "state"
    whole_alerts, whole_scores, _ = replay(tmp_path, "whole", stream["all"])
    a_alerts, a_scores, a_out = replay(tmp_path, "a", stream["a"], "--state", str(state))
    assert int(summary_value(a_out, "pending_carried_over")) >= 1
    b_alerts, b_scores, b_out = replay(tmp_path, "b", stream["b"], "--state", str(state),
                                       "--flush-pending")
    assert whole_alerts.count(b"\n") > 10 and b_alerts.count(b"\n") > 3
    assert a_scores + b_scores == whole_scores
    assert a_alerts + b_alerts == whole_alerts
    assert summary_value(b_out, "pending_carried_over") == "0"

    # without a state (today's behaviour) B is worse: every user is new again
    _, cold_scores, _ = replay(tmp_path, "cold", stream["b"])
    assert cold_scores != b_scores

    # carried over without --flush-pending: same as one run over both with a state
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    one = replay(tmp_path, "one", stream["all"], "--state", str(s1))
    first = replay(tmp_path, "first", stream["a"], "--state", str(s2))
    second = replay(tmp_path, "second", stream["b"], "--state", str(s2))
    assert first[0] + second[0] == one[0] and first[1] + second[1] == one[1]
    assert summary_value(one[2], "pending_carried_over") == summary_value(
        second[2], "pending_carried_over")
    gen1 = statedir.current_generation(s1)
    gen2 = statedir.current_generation(s2)
    for name in ("users.jsonl.gz", "networks.jsonl.gz", "population.json.gz", "core.json"):
        assert (gen1 / name).read_bytes() == (gen2 / name).read_bytes(), name


def test_backfill_then_replay_b_is_one_replay_of_both(stream, tmp_path):
    """backfill A (two files given in reverse order, merged by event time; a tiny decoded
    cache so states go through RocksDB all the time) then replay B equals one run."""
    _, whole_scores, _ = replay(tmp_path, "whole", stream["all"])
    whole_alerts = (tmp_path / "whole.alerts").read_bytes()
    a_lines = stream["lines"][:stream["cut"]]
    half = len(a_lines) // 2
    while orjson.loads(a_lines[half - 1])["ts"] == orjson.loads(a_lines[half])["ts"]:
        half += 1
    a1, a2 = tmp_path / "a1.jsonl", tmp_path / "a2.jsonl"
    a1.write_bytes(b"".join(a_lines[:half]))
    a2.write_bytes(b"".join(a_lines[half:]))
    state = tmp_path / "state"
    done = cli("backfill", str(a2), str(a1), "--state", str(state), "--cache-users", "3",
               "--no-progress")
    assert done.returncode == 0, done.stderr
    assert summary_value(done.stdout, "events") == str(len(a_lines))
    assert int(summary_value(done.stdout, "store_reads")) > 1000       # the cache was tiny
    b_alerts, b_scores, _ = replay(tmp_path, "b", stream["b"], "--state", str(state),
                                   "--flush-pending")
    assert len(b_scores) > 1000 and b_alerts
    # B's outputs are those one run over A+B gives after A's
    ref = tmp_path / "ref"
    a_alerts, a_scores, _ = replay(tmp_path, "a", stream["a"], "--state", str(ref))
    assert a_scores + b_scores == whole_scores
    assert a_alerts + b_alerts == whole_alerts


def test_merge_reads_files_in_event_time_order_and_keeps_bad_lines(tmp_path):
    def ev(i, ts):
        return orjson.dumps({"event_id": f"e{i}", "type": "password_changed", "ts": ts,
                             "user_id": "u"}) + b"\n"
    f1, f2 = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    f1.write_bytes(ev(1, "2026-01-01T00:00:01Z") + b"not json\n" + ev(3, "2026-01-01T00:00:05Z"))
    f2.write_bytes(ev(2, "2026-01-01T00:00:01Z") + ev(4, "2026-01-01T00:00:03Z"))

    class Bar:
        def update(self, n):
            pass
    order = [(Path(where["file"]).name, where["line"])
             for _t, _i, where, _line, _size, _event in merged([str(f1), str(f2)], 10_000, Bar())]
    assert order == [("1.jsonl", 1), ("1.jsonl", 2), ("2.jsonl", 1), ("2.jsonl", 2),
                     ("1.jsonl", 3)]
    settings = load_settings(env={})
    summary = run_backfill([str(f1), str(f2)], str(tmp_path / "state"), settings,
                           dead_letter_path=str(tmp_path / "dead.jsonl"), progress=False)
    assert summary["events"] == 4 and summary["dead_letters"] == 1
    dead = orjson.loads((tmp_path / "dead.jsonl").read_bytes())
    assert dead["source"] == {"file": str(f1), "line": 2} and dead["reason"] == "malformed_json"


def corrupt(manifest_path: Path, **changes) -> None:
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest.update(changes)
    manifest_path.write_bytes(orjson.dumps(manifest))


def test_refusals_are_one_line_and_exit_2(stream, tmp_path):
    state = tmp_path / "state"
    replay(tmp_path, "a", stream["a"], "--state", str(state))
    gen = statedir.current_generation(state)
    args = ("replay", str(stream["b"]), "--alerts", str(tmp_path / "x"), "--scores",
            str(tmp_path / "y"), "--no-progress", "--state", str(state))

    # other detector settings: refused, or accepted with a warning
    env = {"STRAYCODE__DETECTOR__VERIFY_WINDOW_S": "60"}
    done = cli(*args, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("straycode: ") and "--accept-settings-change" in done.stderr
    done = cli(*args, "--accept-settings-change", env=env)
    assert done.returncode == 0 and "other detector settings" in done.stderr

    # another format version (written by a newer straycode)
    shutil.rmtree(state)
    replay(tmp_path, "a", stream["a"], "--state", str(state))
    gen = statedir.current_generation(state)
    saved = (gen / "manifest.json").read_bytes()
    corrupt(gen / "manifest.json", format_version=2)
    for command in (args, ("backfill", str(stream["b"]), "--state", str(state), "--no-progress")):
        done = cli(*command)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "format version 2" in done.stderr and "reads format version 1" in done.stderr
    (gen / "manifest.json").write_bytes(saved)

    # a damaged file
    users = gen / "users.jsonl.gz"
    data = bytearray(users.read_bytes())
    data[len(data) // 2] ^= 0xFF
    users.write_bytes(bytes(data))
    done = cli(*args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "corrupt" in done.stderr or "does not match its manifest" in done.stderr

    # not a state directory
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    done = cli("backfill", str(stream["a"]), "--state", str(other), "--no-progress")
    assert done.returncode == 2 and "not a straycode state directory" in done.stderr


def test_a_failed_save_leaves_the_old_state(stream, tmp_path, monkeypatch):
    """A crash in the middle of a save (injected: while writing the networks file, then at
    the switch of CURRENT) leaves the previous state in use, readable and complete."""
    settings = load_settings(env={})
    state = tmp_path / "state"
    run_replay(str(stream["a"]), tmp_path / "a.alerts", tmp_path / "a.scores", None, settings,
               progress=False, state_dir=str(state))
    before = {p.name: p.read_bytes() for p in statedir.current_generation(state).iterdir()}
    real_write = statedir._write_records

    def crash_in_networks(path, records):
        if path.name == statedir.NETWORKS:
            next(records)
            raise OSError(28, "No space left on device (injected)")
        return real_write(path, records)

    def crash_at_switch(root, name):
        raise OSError(5, "I/O error (injected)")

    for name, fn in (("_write_records", crash_in_networks), ("_replace_current", crash_at_switch)):
        with monkeypatch.context() as m:
            m.setattr(statedir, name, fn)
            with pytest.raises(OSError, match="injected"):
                run_replay(str(stream["b"]), tmp_path / "b.alerts", tmp_path / "b.scores", None,
                           settings, progress=False, state_dir=str(state), flush_pending=True)
        gen = statedir.current_generation(state)
        assert gen.name == "gen-00000001"
        assert {p.name: p.read_bytes() for p in gen.iterdir()} == before
        manifest = statedir.read_manifest(state)
        assert sum(1 for _ in statedir.iter_records(manifest, statedir.USERS)) == \
            manifest["counts"]["users"]

    # and the next run continues from it as if nothing happened
    run_replay(str(stream["b"]), tmp_path / "b.alerts", tmp_path / "b.scores", None, settings,
               progress=False, state_dir=str(state), flush_pending=True)
    assert sorted(p.name for p in state.iterdir()) == ["CURRENT", "gen-00000002"]
    run_replay(str(stream["all"]), tmp_path / "w.alerts", tmp_path / "w.scores", None, settings,
               progress=False)
    assert (tmp_path / "w.scores").read_bytes() == (
        (tmp_path / "a.scores").read_bytes() + (tmp_path / "b.scores").read_bytes())


def test_disk_store_writes_back_what_leaves_its_cache(tmp_path):
    store = DiskStore(tmp_path / "db", UserState.to_bytes, UserState.from_bytes, cache_size=2)
    for n in range(5):
        state = UserState()
        state.code_times = [n]
        store[f"u{n}"] = state
    assert len(store.cache) == 2 and store.writes == 3
    state = store["u0"]                     # read back from RocksDB
    assert state.code_times == [0]
    state.code_times.append(9)
    store["u0"] = state
    assert [k for k in store] == [f"u{n}" for n in range(5)]     # iterating flushes
    assert [(k, UserState.from_bytes(v).code_times) for k, v in store.items_raw()][0] == ("u0", [0, 9])
    assert store.get("nobody") is None and "u4" in store
    store.close()


def test_changelog_names_are_fausts(tmp_path):
    from straycode.streams.app import create_app
    from straycode.streams.handover import topic_names
    from straycode.streams.tables import network_view, user_table

    settings = load_settings(env={"STRAYCODE__KAFKA__APP_ID": "acme-prod"})
    kcfg = settings["kafka"]
    app = create_app(settings, datadir=str(tmp_path / "data"))
    names = topic_names(kcfg)
    assert names["users"] == user_table(app, kcfg).changelog_topic.get_topic_name()
    assert names["networks"] == network_view(app, kcfg).changelog_topic.get_topic_name()
    assert names["warm"] == "acme-prod-warm-start"
