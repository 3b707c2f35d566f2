"""Kafka pipeline benchmark on a real (Tansu) broker started for the run.

1. Throughput: the same N pre-produced events read, one after the other in the same run,
   by (a) a raw aiokafka consume->produce pass-through, timed from its first to its last
   message, (b) a Faust agent that only counts (bench/faust_noop.py: same consumer
   settings and batching as the worker; Faust's own ceiling), on stock Faust (its
   delivery and take_events: the reference) and again on straycode's eager delivery and
   direct batches (streams/faust_compat.py) and (c) one or more
   `straycode worker`s of one group (decode, detector, tables, outputs), (b) and (c) timed
   from the moment every partition has its worker to the last event. Reported: events/s,
   worker CPU per event, straycode / no-op (target >= 0.5) and / raw, and the table
   changelog records written per input event (read back from the changelog topics).
2. Latency at fixed input rates (default: half of one worker's throughput measured in
   this run, and 2k events/s; detector.verify_window_s=0 so that codes are decided on
   arrival): Kafka CreateTime of the input code event -> CreateTime of its score record /
   alert (same host clock). Target: p99 <= 250 ms.

    python -m bench.streams_bench [--users 3500] [--days 20] [--workers 1,2] [--repeat N]
                                  [--rates half,2000] [--seconds 10] [--latency-workers 1]
                                  [--no-scores] [--throughput-only | --latency-only]
    BENCH_PROFILE=/tmp/prof  ... also records a py-spy profile of the one-worker runs
                                 (throughput and latency; summary: python -m bench.profile_split)
    BENCH_FETCH_WAIT_MS=20   ... the workers' kafka.fetch_max_wait_ms (default 50)
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures_broker import free_port, start_tansu, stop_tansu  # noqa: E402

from bench.synthetic import generate  # noqa: E402


def produce_file(bootstrap: str, topic: str, path: Path, rate: float = 0.0) -> int:
    """Publish every line keyed by user_id; at `rate` events/s when given."""
    from kafka import KafkaProducer

    # paced: batches of what a 2 ms linger collects (one request per record cannot keep
    # up with 1k+ records/s against Tansu, and its queueing would count as latency)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2 if rate else 20,
                             batch_size=16384 if rate else 65536, acks=1)
    n, start = 0, time.perf_counter()
    for line in path.read_bytes().splitlines():
        user = orjson.loads(line)["user_id"].encode()
        producer.send(topic, key=user, value=line)
        n += 1
        if rate:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    producer.flush()
    producer.close()
    if rate:
        took = time.perf_counter() - start
        print(f"  produced {n} events in {took:.2f} s ({n / took:.0f}/s, asked {rate:.0f}/s)")
    return n


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    admin.close()


async def raw_passthrough(bootstrap: str, src: str, dst: str, n: int,
                          group: str = "raw-passthrough") -> float:
    """Seconds from first to last message for consume -> produce, aiokafka, no processing."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", session_timeout_ms=6000,
                                heartbeat_interval_ms=1000, max_poll_interval_ms=10000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    seen, first = 0, None
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                if first is None:
                    first = time.perf_counter()
                for r in records:
                    await producer.send(dst, r.value, key=r.key)
                seen += len(records)
        await producer.flush()
        return time.perf_counter() - first
    finally:
        await consumer.stop()
        await producer.stop()


def worker_env(bootstrap: str, app_id: str, **over) -> dict[str, str]:
    env = {"STRAYCODE__KAFKA__BROKER": f"kafka://{bootstrap}",
           # Tansu answers a fetch only when its wait expires: see docs/streams.md
           "STRAYCODE__KAFKA__FETCH_MAX_WAIT_MS": os.environ.get("BENCH_FETCH_WAIT_MS", "50"),
           "STRAYCODE__KAFKA__APP_ID": app_id, "STRAYCODE__ALERTS__FORMAT": "native"}
    for key in ("logins", "codes", "events", "alerts", "scores", "dead_letters", "network_ops",
                "ticks"):
        env[f"STRAYCODE__KAFKA__TOPICS__{key.upper()}"] = f"{app_id}.{key}"
    env.update(over)
    return env


WORKER = [sys.executable, "-m", "straycode.cli", "worker"]
NOOP = [sys.executable, "-m", "bench.faust_noop"]      # the Faust agent that only counts


class Worker:
    def __init__(self, env: dict, tmp: Path, name: str, command: list[str] = WORKER):
        self.port = free_port()
        self.log = open(tmp / f"{name}.log", "wb")
        self.proc = subprocess.Popen(
            [*command, "--web-port", str(self.port), "--datadir", str(tmp / name),
             "--loglevel", os.environ.get("BENCH_LOGLEVEL", "warning")],
            env=dict(os.environ, **env), stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def metric(self, name: str) -> float:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))

    def partitions(self) -> list[int] | None:
        """Owned partitions once the worker is ready, else None."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                body = orjson.loads(r.read())
                return body["partitions"] if body["ok"] else None
        except OSError:
            return None

    def cpu_s(self) -> float:
        """User + system CPU seconds the worker process used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_group(env: dict, tmp: Path, name: str, n: int, timeout: float = 120,
                command: list[str] = WORKER) -> list[Worker]:
    """n workers in one consumer group, returned once every input partition is owned."""
    workers = [Worker(env, tmp, f"{name}{i}", command) for i in range(n)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owned = [w.partitions() for w in workers]
        if all(owned) and sorted(p for ps in owned for p in ps) == [0, 1, 2, 3]:
            return workers
        assert all(w.proc.poll() is None for w in workers), "worker died"
        time.sleep(0.2)
    for w in workers:
        w.stop()
    raise TimeoutError("workers not ready")


def group_metric(workers: list[Worker], name: str) -> float:
    return sum(w.metric(name) for w in workers)


def settled(workers: list[Worker], timeout: float = 60) -> None:
    """Wait until the workers have written every changed state and acknowledged every held
    message (checkpoints write a state some seconds after its change), so that the
    changelog records counted are all the run caused."""
    time.sleep(1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (group_metric(workers, "straycode_unwritten_states") == 0
                and group_metric(workers, "straycode_held_messages") == 0):
            time.sleep(0.5)                  # the last records reach the broker
            return
        time.sleep(0.25)
    raise TimeoutError("workers still hold unwritten states")


_RUNS = 0


@dataclass
class Run:
    """One throughput measurement."""
    events_s: float
    cpu_ms: float                      # worker CPU per event
    changelog: dict[str, int] = field(default_factory=dict)   # table -> records written


def faust_throughput(bootstrap: str, tmp: Path, n: int, workers: int,
                     command: list[str] = WORKER, input_topic: str = "bench.in",
                     **env_over: str) -> Run:
    """Events per second handled by `workers` processes of one group on the pre-produced
    input, counted from the moment every partition has its worker (events a first worker
    read while the others were still joining are not counted) to the last event."""
    global _RUNS
    _RUNS += 1
    app = f"bench-tp{_RUNS}"
    env = worker_env(bootstrap, app, STRAYCODE__KAFKA__TOPICS__EVENTS=input_topic, **env_over)
    group = start_group(env, tmp, app, workers, command=command)
    spy = None
    try:
        if os.environ.get("BENCH_PROFILE") and command is WORKER and workers == 1:
            spy = start_profile(group[0], os.environ["BENCH_PROFILE"])
        start, done0 = time.perf_counter(), group_metric(group, "straycode_events_in_total")
        cpu0 = sum(w.cpu_s() for w in group)
        deadline = time.monotonic() + 600
        progress = (done0, time.monotonic())
        while time.monotonic() < deadline:
            done = group_metric(group, "straycode_events_in_total")
            dead = [w for w in group if w.proc.poll() is not None]
            if dead or (done == progress[0] and time.monotonic() - progress[1] > 60):
                raise RuntimeError(f"{app}: {'a worker exited' if dead else 'no progress for 60 s'}"
                                   f" at {done:.0f}/{n} events; see the logs in {tmp}")
            if done != progress[0]:
                progress = (done, time.monotonic())
            if done >= n:
                elapsed = time.perf_counter() - start
                cpu = sum(w.cpu_s() for w in group) - cpu0
                spy = stop_profile(spy)              # the profile covers the run only
                written = {}
                if command is WORKER:
                    settled(group)                   # every changed state written
                    for table in ("users", "network-view"):
                        written[table] = len(read_all(bootstrap, f"{app}-{table}-changelog"))
                return Run((n - done0) / elapsed, 1000 * cpu / (n - done0), written)
            # polled 4 times a second: rendering /metrics costs the worker CPU too (at 20/s
            # it was ~2% of a worker's samples, counted against straycode)
            time.sleep(0.25)
        raise TimeoutError(f"workers read {done}/{n}")
    finally:
        stop_profile(spy)
        for w in group:
            w.stop()


def start_profile(worker: "Worker", prefix: str) -> subprocess.Popen:
    """py-spy on a worker (raw samples of every thread, idle ones too, so that
    `python -m bench.profile_split` can tell busy from waiting) into <prefix>-<run>.txt."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--idle", "--threads",
         "--pid", str(worker.proc.pid), "--format", "raw", "--rate", "200", "--nonblocking",
         "-o", f"{prefix}-{_RUNS}.txt"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profile(spy: subprocess.Popen | None) -> None:
    """Stop py-spy (SIGINT: it writes its file then); returns None for the caller's handle."""
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    return None


def read_all(bootstrap: str, topic: str) -> list:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out, idle = [], 0
    while idle < 3:
        got = c.poll(timeout_ms=300)
        idle = 0 if got else idle + 1
        for records in got.values():
            out.extend(records)
    c.close()
    return out


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def latency(bootstrap: str, tmp: Path, path: Path, rate: float, scores: bool,
            workers: int) -> dict:
    global _RUNS
    _RUNS += 1
    app = f"bench-lat{_RUNS}"
    env = worker_env(bootstrap, app, STRAYCODE__DETECTOR__VERIFY_WINDOW_S="0",
                     STRAYCODE__KAFKA__EMIT_SCORES="true" if scores else "false")
    create_topics(bootstrap, [f"{app}.{t}" for t in ("events", "logins", "codes")], 4)
    group = start_group(env, tmp, app, workers)
    spy = (start_profile(group[0], os.environ["BENCH_PROFILE"])
           if os.environ.get("BENCH_PROFILE") and workers == 1 else None)
    try:
        cpu0, t0 = sum(w.cpu_s() for w in group), time.perf_counter()
        n = produce_file(bootstrap, f"{app}.events", path, rate)
        spy = stop_profile(spy)
        print(f"  worker CPU {sum(w.cpu_s() for w in group) - cpu0:.1f} s over the "
              f"{time.perf_counter() - t0:.1f} s of input")
        deadline = time.monotonic() + 120
        while group_metric(group, "straycode_events_in_total") < n and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        hist = (group_metric(group, "straycode_scoring_latency_seconds_sum"),
                group_metric(group, "straycode_scoring_latency_seconds_count"))
        if os.environ.get("BENCH_DUMP_METRICS"):
            for w in group:
                with urllib.request.urlopen(f"http://127.0.0.1:{w.port}/metrics") as r:
                    print("\n".join(l for l in r.read().decode().splitlines()
                                    if l.startswith(("straycode_batch", "straycode_ack"))))
    finally:
        stop_profile(spy)
        for w in group:
            w.stop()
    sent = {}
    for r in read_all(bootstrap, f"{app}.events"):
        e = orjson.loads(r.value)
        if e["type"] == "code_issued":
            sent[e["event_id"]] = r.timestamp
    def lat(topic: str) -> list[float]:
        return [r.timestamp - sent[orjson.loads(r.value)["code_event_id"]]
                for r in read_all(bootstrap, topic)
                if orjson.loads(r.value)["code_event_id"] in sent]
    if os.environ.get("BENCH_DUMP_METRICS") and scores:
        rows = sorted((sent[orjson.loads(r.value)["code_event_id"]], r.timestamp)
                      for r in read_all(bootstrap, f"{app}.scores")
                      if orjson.loads(r.value)["code_event_id"] in sent)
        t0 = rows[0][0]
        for i in range(0, len(rows), max(1, len(rows) // 20)):
            print(f"  sent +{(rows[i][0] - t0) / 1000:6.2f} s  latency {rows[i][1] - rows[i][0]:6.0f} ms")
    return {"events": n, "scores": lat(f"{app}.scores") if scores else [],
            "alerts": lat(f"{app}.alerts"),
            "detector_ms_mean": 1000 * hist[0] / hist[1] if hist[1] else None}


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if len(values) == 1 else f"{fmt.format(lo)}-{fmt.format(hi)}"


def throughput(broker, tmp: Path, n: int, workers: list[int], repeat: int) -> dict:
    """Raw aiokafka, the no-op Faust agent (stock Faust, and on straycode's eager delivery
    and direct batches) and straycode on the same input, measured in the same run (one after
    the other, `repeat` rounds); ratios are taken within a round."""
    raw, noop, eager, ours = [], [], [], {k: [] for k in workers}
    for r in range(repeat):
        create_topics(broker.bootstrap, [f"bench.raw-out{r}"], 4)
        raw_s = asyncio.run(raw_passthrough(broker.bootstrap, "bench.in", f"bench.raw-out{r}",
                                            n, group=f"raw-passthrough{r}"))
        raw.append(Run(n / raw_s, float("nan")))
        noop.append(faust_throughput(broker.bootstrap, tmp, n, 1, command=NOOP,
                                     STRAYCODE__KAFKA__EAGER_DELIVERY="false",
                                     STRAYCODE__KAFKA__DIRECT_BATCHES="false"))
        eager.append(faust_throughput(broker.bootstrap, tmp, n, 1, command=NOOP,
                                      STRAYCODE__KAFKA__EAGER_DELIVERY="true",
                                      STRAYCODE__KAFKA__DIRECT_BATCHES="true"))
        for k in workers:
            ours[k].append(faust_throughput(broker.bootstrap, tmp, n, k))
        line = [f"round {r + 1}: raw {raw[-1].events_s:.0f}/s, no-op Faust {noop[-1].events_s:.0f}/s "
                f"({noop[-1].cpu_ms:.3f} ms CPU/event), no-op on straycode's path "
                f"{eager[-1].events_s:.0f}/s ({eager[-1].cpu_ms:.3f} ms)"]
        for k in workers:
            run = ours[k][-1]
            per = {t: c / n for t, c in run.changelog.items()}
            line.append(f"straycode x{k} {run.events_s:.0f}/s ({run.cpu_ms:.3f} ms CPU/event, "
                        f"{run.events_s / noop[-1].events_s:.2f} x no-op, "
                        f"{run.events_s / eager[-1].events_s:.2f} x that no-op, "
                        f"{run.events_s / raw[-1].events_s:.3f} x raw; changelog/event "
                        + ", ".join(f"{t} {v:.3f}" for t, v in per.items())
                        + f", total {sum(per.values()):.3f})")
        print("; ".join(line), flush=True)
    print(f"raw aiokafka consume->produce : {spread([x.events_s for x in raw])} events/s")
    print(f"no-op Faust agent (take_events): {spread([x.events_s for x in noop])} events/s, "
          f"{spread([x.cpu_ms for x in noop], '{:.3f}')} ms CPU/event (stock Faust)")
    print(f"  same, straycode's path      : {spread([x.events_s for x in eager])} events/s, "
          f"{spread([x.cpu_ms for x in eager], '{:.3f}')} ms CPU/event "
          "(eager delivery, direct batches)")
    for k in workers:
        runs = ours[k]
        print(f"straycode, {k} worker(s)       : {spread([x.events_s for x in runs])} events/s, "
              f"{spread([x.cpu_ms for x in runs], '{:.3f}')} ms CPU/event; "
              f"x no-op {spread([a.events_s / b.events_s for a, b in zip(runs, noop)], '{:.2f}')} "
              f"(target >= 0.5), x that no-op "
              f"{spread([a.events_s / b.events_s for a, b in zip(runs, eager)], '{:.2f}')}, x raw "
              f"{spread([a.events_s / b.events_s for a, b in zip(runs, raw)], '{:.3f}')}; "
              f"changelog records/event "
              f"{spread([sum(x.changelog.values()) / n for x in runs], '{:.3f}')} (target <= 0.3)")
    if len(workers) > 1 and 1 in workers:
        for k in workers:
            if k != 1:
                print(f"  {k} workers / 1 worker: "
                      f"{spread([a.events_s / b.events_s for a, b in zip(ours[k], ours[1])], '{:.2f}')}"
                      f" (each worker needs its own core; this box has {os.cpu_count()} "
                      "shared with the broker and the other jobs)")
    return {"noop": noop, "eager": eager, "ours": ours}


def print_latency(broker, tmp: Path, path: Path, rate: float, seconds: float, scores: bool,
                  workers: int) -> None:
    lat_path = tmp / "lat.jsonl"
    lines = path.read_bytes().splitlines()[: int(rate * seconds)]
    lat_path.write_bytes(b"\n".join(lines) + b"\n")
    res = latency(broker.bootstrap, tmp, lat_path, rate, scores, workers)
    print(f"latency at {rate:.0f} events/s for {res['events']} events, {workers} worker(s) "
          f"(verify_window_s=0, emit_scores={scores}); decode+detector mean "
          f"{res['detector_ms_mean']:.3f} ms")
    for name in ("scores", "alerts"):
        vals = res[name]
        if vals:
            print(f"  event -> {name:<6}: n={len(vals):6d}  p50={pct(vals, .5):6.0f} ms  "
                  f"p99={pct(vals, .99):6.0f} ms  max={max(vals):6.0f} ms   (target p99 <= 250 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=3500)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--rates", default="half,2000",
                    help="input rates of the latency runs, events/s; 'half' = half of one "
                         "worker's throughput measured in this run")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--no-scores", action="store_true",
                    help="latency run without kafka.emit_scores (alerts only, no per-code ack wait)")
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--throughput-only", action="store_true")
    ap.add_argument("--workers", default="1,2",
                    help="worker counts for the throughput runs (comma-separated)")
    ap.add_argument("--repeat", type=int, default=1, help="throughput rounds")
    ap.add_argument("--latency-workers", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        broker = start_tansu(tmp / "tansu.log")
        try:
            path = tmp / "events.jsonl"
            counts = generate(path, args.users, args.days)
            create_topics(broker.bootstrap, ["bench.in"], 4)
            n = produce_file(broker.bootstrap, "bench.in", path)
            print(f"input: {n} events ({counts.codes} codes, {args.users} users x {args.days} "
                  f"days), 4 partitions, Tansu on {broker.bootstrap}", flush=True)
            capacity = None
            if not args.latency_only:
                workers = [int(k) for k in args.workers.split(",")]
                res = throughput(broker, tmp, n, workers, args.repeat)
                if 1 in workers:
                    capacity = min(r.events_s for r in res["ours"][1])
            if args.throughput_only:
                return
            for rate in args.rates.split(","):
                if rate == "half":
                    if capacity is None:
                        continue
                    rate = capacity / 2
                print_latency(broker, tmp, path, float(rate), args.seconds, not args.no_scores,
                              args.latency_workers)
        finally:
            stop_tansu(broker)


if __name__ == "__main__":
    main()
