"""Summarise a raw py-spy profile of a worker (`BENCH_PROFILE=<prefix> python -m
bench.streams_bench ...` records one with idle samples and thread names):

- per thread: samples, and the share spent waiting in the event loop's selector (idle);
- the main thread's busy samples by the package of their innermost frame (asyncio, mode,
  faust, aiokafka, straycode's detector and streams glue, other), the split that
  docs/streams.md reports, and its most frequent innermost frames.

    python -m bench.profile_split /tmp/prof-3.txt [--top 15]
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

SAMPLE = re.compile(r"^(.*) (\d+)$")
IDLE = "select (selectors.py"
# innermost frame file -> package; the first prefix that matches wins
PACKAGES = (("detector/", "detector"), ("streams/", "straycode.streams"),
            ("straycode/", "straycode (other)"), ("faust/", "faust"), ("mode/", "mode"),
            ("aiokafka/", "aiokafka"), ("kafka/", "aiokafka"), ("asyncio/", "asyncio"))


def package(frame: str) -> str:
    where = frame.rpartition(" (")[2]
    for prefix, name in PACKAGES:
        if where.startswith(prefix):
            return name
    return "other (C extensions, stdlib)"


def split(path: str) -> tuple[Counter, Counter, Counter, Counter]:
    """(samples per thread, idle samples per thread, main thread busy samples per package,
    per innermost frame)."""
    threads, idle, packages, frames = Counter(), Counter(), Counter(), Counter()
    with open(path) as f:
        for line in f:
            m = SAMPLE.match(line.rstrip("\n"))
            if m is None:
                continue
            stack, n = m.group(1).split(";"), int(m.group(2))
            thread = stack[0].partition(": ")[2] or stack[0]
            threads[thread] += n
            if IDLE in stack[-1]:
                idle[thread] += n
            elif thread == "MainThread":
                packages[package(stack[-1])] += n
                frames[stack[-1]] += n
    return threads, idle, packages, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    threads, idle, packages, frames = split(args.profile)
    for thread, n in threads.most_common():
        print(f"{thread:<12} {n:7d} samples, {idle[thread] / n:6.1%} waiting in the selector")
    busy = sum(packages.values())
    print(f"MainThread busy samples by innermost package ({busy}):")
    for name, n in packages.most_common():
        print(f"  {n / busy:6.1%}  {name}")
    print("most frequent innermost frames:")
    for frame, n in frames.most_common(args.top):
        print(f"  {n / busy:6.1%}  {frame[:110]}")


if __name__ == "__main__":
    main()
