"""bench/profile_split.py: the summary docs/streams.md quotes, on a raw py-spy file."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.profile_split import package, split  # noqa: E402

LOOP = ("thread (11): MainThread;run (streams/worker_cli.py:70);"
        "BaseEventLoop._run_once (asyncio/base_events.py:1922)")
RAW = "\n".join([
    f"{LOOP};EpollSelector.select (selectors.py:468) 30",
    f"{LOOP};Handle._run (asyncio/events.py:80);Detector.process (detector/engine.py:78) 50",
    f"{LOOP};Handle._run (asyncio/events.py:80);UserAgent.admit (streams/user_agent.py:204) 15",
    f"{LOOP};Handle._run (asyncio/events.py:80) 5",
    "thread (12): Thread-1;Fetcher._fetch (aiokafka/consumer/fetcher.py:1) 10",
    "thread (12): Thread-1;EpollSelector.select (selectors.py:468) 90",
    "not a sample line",
]) + "\n"


def test_idle_share_and_package_split(tmp_path):
    path = tmp_path / "prof-1.txt"
    path.write_text(RAW)
    threads, idle, packages, frames = split(str(path))
    assert threads == {"MainThread": 100, "Thread-1": 100}
    assert idle == {"MainThread": 30, "Thread-1": 90}
    assert packages == {"detector": 50, "straycode.streams": 15, "asyncio": 5}
    assert frames.most_common(1)[0] == ("Detector.process (detector/engine.py:78)", 50)


def test_package_of_frames_outside_the_known_ones():
    assert package("Mapping.get (<frozen _collections_abc>:774)").startswith("other")
    assert package("Stream._c_aiter (faust/streams.py:1180)") == "faust"
    assert package("Service.wait_first (mode/services.py:1)") == "mode"
