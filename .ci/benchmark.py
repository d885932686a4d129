"""The kit's benchmark: waiting against computing, and one process each against a pool.

    .venv/bin/python .ci/benchmark.py [--rounds 3]

Prints the two tables the README quotes. Each figure is the wall time of a
whole python3 process, start-up included: the median over the rounds, with
the fastest and the slowest in brackets. Run it on a quiet machine; it takes
about five minutes on 2 cores. CI does not run it.
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))
import mp  # the kit
from pets import pet_maps

DELAY = 0.5  # seconds each lookup waits or computes in the first table


def sleep_lookup(pet_name):
    """The post's lookup, returning its answer: it waits."""
    time.sleep(DELAY)
    return f"pet name: {pet_name}"


def cpu_lookup(pet_name):
    """The same, computing for DELAY seconds of this thread's CPU time instead."""
    done_at = time.thread_time() + DELAY
    while time.thread_time() < done_at:
        sum(number * number for number in range(10_000))
    return f"pet name: {pet_name}"


def instant_lookup(pet_name):
    """No work at all: what is left is the cost of the processes themselves."""
    return f"pet name: {pet_name}"


def child(way, work, people, method):
    """One measured run, in a process of its own."""
    lookup = {"sleep": sleep_lookup, "cpu": cpu_lookup, "none": instant_lookup}[work]
    names = [f"pet{number}" for number in range(people)]
    context = multiprocessing.get_context(None if method == "default" else method)
    if way == "one after another":
        results = [lookup(name) for name in names]
    elif way == "ThreadPoolExecutor(10)":
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lookup, names))
    elif way.startswith("ProcessPoolExecutor"):
        workers = 10 if "(10)" in way else os.cpu_count()
        with concurrent.futures.ProcessPoolExecutor(workers, context) as pool:
            results = list(pool.map(lookup, names))
    else:  # mp.py, one process per person
        people_map = {f"person{n}": {"pet_name": name} for n, name in enumerate(names)}
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the workers' "adding to queue" lines
        results = list(mp.find_pet_names(people_map, 0, context.get_start_method()))
    assert len(results) == people


def measure(rounds, *arguments):
    """Wall times of `rounds` whole runs: of mp.py itself, or of child()."""
    if arguments[0] == "python3 mp.py":
        command = [sys.executable, str(KIT / "mp.py"), f"--delay={DELAY}"]
        command += ["--work=cpu"] * (arguments[1] == "cpu")
    else:
        command = [sys.executable, __file__, "--child", *map(str, arguments)]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def cell(times):
    """The median, and the fastest and slowest, in seconds."""
    return f"{statistics.median(times):.2f} s ({min(times):.2f} to {max(times):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, work, people, method = args.child
        # A process per person needs open files; let the limit not stop a count.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return child(way, work, int(people), method)
    cores = len(os.sched_getaffinity(0))
    print(f"CPython {sys.version.split()[0]}, {cores} cores, {args.rounds} rounds\n")
    print(f"Ten lookups of {DELAY} s each, four ways, this Python's start method:\n")
    print("| way | sleep (waiting) | cpu (computing) |\n|---|---|---|")
    ways = ["one after another", "ThreadPoolExecutor(10)", "python3 mp.py"]
    for way in [*ways, "ProcessPoolExecutor(10)"]:
        figures = [
            cell(measure(args.rounds, way, work, len(pet_maps), "default"))
            for work in ("sleep", "cpu")
        ]
        print(f"| {way} | {' | '.join(figures)} |", flush=True)
    print("\nLookups that do nothing: one process per person against a pool:\n")
    print(
        "| people | start method | mp.py, one process each | "
        f"ProcessPoolExecutor({cores}) |\n|---|---|---|---|"
    )
    for people in (10, 100, 1000):
        for method in multiprocessing.get_all_start_methods():
            figures = [
                cell(measure(args.rounds, way, "none", people, method))
                for way in ("mp.py", "ProcessPoolExecutor(cores)")
            ]
            print(f"| {people:,} | {method} | {' | '.join(figures)} |", flush=True)


if __name__ == "__main__":
    main()
