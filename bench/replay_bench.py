"""Replay throughput and state size of the detector core.

Targets (issue): >= 50k events/s on one core for `straycode replay`, <= 2 KB of state per
user at 100k users. Throughput is printed next to a reference measured in the same run on
the same file (plain orjson parsing of every line), so numbers from different machines
compare as a ratio. The two "core:" rows time decode_line and Detector.process apart in
one extra streaming pass without output writing (per-stage µs per event). Each stage runs
--repeat times; the fastest run is shown, with the CPU time of this process next to the
wall time: on a shared machine other jobs inflate wall time, much less CPU time.

    python -m bench.replay_bench [--users 20000] [--days 30] [--state-users 100000]
                                 [--state-days 14] [--repeat 1] [--no-geoip] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

from straycode.detector.contract import decode_line
from straycode.detector.engine import Detector
from straycode.detector.enrich import default_city_db
from straycode.components import build_enricher
from straycode.replay import run_replay
from straycode.settings import detector_settings, load_settings

from .synthetic import generate

TARGET_EVENTS_S = 50_000
TARGET_BYTES_PER_USER = 2048


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def best_of(repeat: int, fn) -> tuple[float, float, object]:
    """(wall s, CPU s, result) of the run with the least CPU time among `repeat` runs."""
    best = None
    for _ in range(repeat):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = fn()
        run = (time.perf_counter() - wall0, time.process_time() - cpu0, result)
        if best is None or run[1] < best[1]:
            best = run
    return best


def plain_parse(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for line in f:
            orjson.loads(line)
            n += 1
    return n


def contract_parse(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for line in f:
            decode_line(line.rstrip(b"\n"))
            n += 1
    return n


def split_core(path: Path, settings: dict, city_db: str | None,
               clock=time.perf_counter) -> tuple[float, float]:
    """One streaming pass, decode_line and Detector.process timed apart (no output writing).

    Returns (decode seconds, detector seconds); each includes one clock call per event.
    """
    det = Detector(detector_settings(settings), build_enricher(settings, city_db))
    decode_s = detect_s = 0.0
    with open(path, "rb") as f:
        for line in f:
            t0 = clock()
            event = decode_line(line.rstrip(b"\n"))
            t1 = clock()
            det.process(event)
            t2 = clock()
            decode_s += t1 - t0
            detect_s += t2 - t1
    t1 = clock()
    det.flush()
    detect_s += clock() - t1
    det.enricher.close()
    return decode_s, detect_s


def replay(path: Path, out: Path, settings: dict, city_db: str | None) -> dict:
    settings = dict(settings, geoip=dict(settings["geoip"], city_db=city_db))
    return run_replay(str(path), out / "alerts.jsonl", out / "scores.jsonl", out / "dead.jsonl",
                      settings, geoip_db=city_db, progress=False)


def state_sizes(path: Path, settings: dict, city_db: str | None) -> dict:
    """Feed a long history for many users through a Detector; measure what it keeps."""
    rss_before = rss_mb()
    det = Detector(detector_settings(settings), build_enricher(settings, city_db))
    started = time.perf_counter()
    events = 0
    with open(path, "rb") as f:
        for line in f:
            det.process(decode_line(line.rstrip(b"\n")))
            events += 1
    det.flush()
    elapsed = time.perf_counter() - started
    sizes = sorted(len(state.to_bytes()) for state in det.users.values())
    net_sizes = [len(state.to_bytes()) for state in det.networks.values()]
    pop_values = sum(len(t) for t in det.population.counts.values())
    result = {
        "users": len(sizes), "events": events, "seconds": elapsed,
        "mean": statistics.fmean(sizes), "p50": sizes[len(sizes) // 2],
        "p99": sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))], "max": sizes[-1],
        "user_total": sum(sizes), "networks": len(net_sizes), "network_total": sum(net_sizes),
        "population_values": pop_values, "rss_mb": rss_mb(), "rss_growth_mb": rss_mb() - rss_before,
    }
    det.enricher.close()
    return result


def profile_replay(path: Path, out: Path, settings: dict, city_db: str | None, top: int = 25) -> str:
    prof = cProfile.Profile()
    prof.enable()
    replay(path, out, settings, city_db)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=20_000, help="users in the throughput file")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--state-users", type=int, default=100_000, help="users for the state-size run")
    p.add_argument("--state-days", type=int, default=14)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=1, help="runs per stage; the fastest is shown")
    p.add_argument("--no-geoip", action="store_true", help="do not use DB-IP City Lite even if installed")
    p.add_argument("--profile", action="store_true", help="also print a cProfile of the replay")
    args = p.parse_args()

    settings = load_settings()
    city_db = None if args.no_geoip else default_city_db()
    print(f"python {sys.version.split()[0]}, geoip: {city_db or 'none'}")
    with tempfile.TemporaryDirectory(prefix="straycode-bench-") as tmp:
        tmp = Path(tmp)
        events_file = tmp / "events.jsonl"
        gen_s, counts = timed(lambda: generate(events_file, args.users, args.days, args.seed))
        print(f"generated {counts.events:,} events ({counts.codes:,} code_issued, "
              f"{counts.bytes / 1e6:.1f} MB) for {args.users:,} users x {args.days} days in {gen_s:.1f} s")

        rows = []
        repeat = args.repeat
        plain_s, plain_cpu, _ = best_of(repeat, lambda: plain_parse(events_file))
        rows.append(("plain orjson.loads (reference)", plain_s, plain_cpu))
        rows.append(("decode_line (contract v1)", *best_of(repeat, lambda: contract_parse(events_file))[:2]))
        replay_s, replay_cpu, summary = best_of(repeat, lambda: replay(events_file, tmp, settings, city_db))
        rows.append(("run_replay (full pipeline)", replay_s, replay_cpu))
        # the split pass, twice: wall clock per stage, then CPU clock per stage
        _, _, (decode_wall, detect_wall) = best_of(repeat, lambda: split_core(events_file, settings, city_db))
        _, _, (decode_cpu, detect_cpu) = best_of(repeat, lambda: split_core(
            events_file, settings, city_db, clock=time.process_time))
        rows.append(("  core: decode_line (split pass)", decode_wall, decode_cpu))
        rows.append(("  core: Detector.process (split)", detect_wall, detect_cpu))

        plain_rate = counts.events / plain_s
        print()
        print(f"{'stage':<34}{'seconds':>9}{'events/s':>12}{'codes/s':>11}{'vs plain':>10}"
              f"{'us/event':>10}{'cpu us/ev':>11}")
        for name, seconds, cpu in rows:
            rate = counts.events / seconds
            print(f"{name:<34}{seconds:>9.2f}{rate:>12,.0f}{counts.codes / seconds:>11,.0f}"
                  f"{rate / plain_rate:>10.3f}{1e6 * seconds / counts.events:>10.1f}"
                  f"{1e6 * cpu / counts.events:>11.1f}")
        replay_rate = counts.events / replay_s
        print(f"\nreplay: {summary['scores']:,} scores, {summary['alerts']:,} alerts, "
              f"{summary['dead_letters']} dead letters, {summary['geoip_lookups']:,} GeoIP lookups")
        print(f"target >= {TARGET_EVENTS_S:,} events/s on one core: "
              f"{'met' if replay_rate >= TARGET_EVENTS_S else 'MISSED'} ({replay_rate:,.0f}; "
              f"{counts.events / replay_cpu:,.0f} per CPU second)")

        if args.profile:
            print("\ncProfile of run_replay (by own time):")
            print(profile_replay(events_file, tmp, settings, city_db))

        events_file.unlink()
        state_file = tmp / "state.jsonl"
        gen_s, counts = timed(lambda: generate(state_file, args.state_users, args.state_days, args.seed + 1))
        print(f"\nstate run: {counts.events:,} events for {args.state_users:,} users x "
              f"{args.state_days} days (generated in {gen_s:.1f} s)")
        st = state_sizes(state_file, settings, city_db)
        print(f"{'UserState.to_bytes()':<34}{'mean':>9}{'p50':>9}{'p99':>9}{'max':>9}")
        print(f"{'bytes per user':<34}{st['mean']:>9,.0f}{st['p50']:>9,}{st['p99']:>9,}{st['max']:>9,}")
        per_user_all = (st["user_total"] + st["network_total"]) / st["users"]
        print(f"users {st['users']:,}: {st['user_total'] / 1e6:.1f} MB of user state; "
              f"networks {st['networks']:,}: {st['network_total'] / 1e6:.1f} MB; "
              f"user + network state per user {per_user_all:,.0f} B")
        print(f"population values kept in memory: {st['population_values']:,}; "
              f"process RSS {st['rss_mb']:,.0f} MB (+{st['rss_growth_mb']:,.0f} MB during the state run)")
        print(f"detector alone (no output writing): {st['events'] / st['seconds']:,.0f} events/s")
        print(f"target <= {TARGET_BYTES_PER_USER} B per user: "
              f"{'met' if st['mean'] <= TARGET_BYTES_PER_USER else 'MISSED'} (mean {st['mean']:,.0f} B, "
              f"p99 {st['p99']:,} B)")


if __name__ == "__main__":
    main()
