"""The kit's benchmark: which tool for waiting, which for computing, and when a pool.

    python3 .ci/benchmark.py [--rounds 3] [--python PATH] [--table 1|2]

Table 1 times ten lookups of 0.5 s, each way this Python has, once waiting
(time.sleep, or asyncio.sleep) and once computing (0.5 s of CPU time each).
Table 2 times lookups that do nothing, one process per person as mp.py does
against a pool of one process per core, for 10, 100 and 1,000 people under
each start method. Every figure is the wall time of a whole process, start-up
included: the median over the rounds, then the fastest and the slowest.

--python runs every row under that interpreter instead of this one; rows it
lacks (InterpreterPoolExecutor before 3.14) say so. It takes some minutes on
2 cores; run it on a quiet machine. CI does not run it.
"""

import argparse
import ast
import asyncio
import concurrent.futures
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))
import mp

DELAY = 0.5  # seconds each lookup of table 1 waits or computes
WORK = os.environ.get("BENCHMARK_WORK", "none")  # for put_lookup, in every worker
WAYS = [
    "one after another",
    "asyncio.gather",
    "ThreadPoolExecutor(10)",
    "python3 mp.py",
    "ProcessPoolExecutor(10)",
    "InterpreterPoolExecutor(10)",
]


def compute(seconds):
    """Compute for `seconds` of this thread's CPU time."""
    done_at = time.thread_time() + seconds
    while time.thread_time() < done_at:
        pass


def lookup(work, pet_name):
    """The post's lookup, returning its answer: it waits, computes, or does nothing."""
    if work == "sleep":
        time.sleep(DELAY)
    elif work == "cpu":
        compute(DELAY)
    return f"pet name: {pet_name}"


def put_lookup(data, output, delay):
    """lookup(), in mp.py's form: it puts (person, result) on the queue."""
    output.put((data[0], lookup(WORK, data[1])))


async def async_lookup(work, pet_name):
    if work == "sleep":
        await asyncio.sleep(DELAY)
    else:  # computing, or nothing: a coroutine cannot hand it on
        lookup(work, pet_name)
    return f"pet name: {pet_name}"


async def gather(work, names):
    return await asyncio.gather(*(async_lookup(work, name) for name in names))


def child(way, work, people, method):
    """One measured run, in a process of its own."""
    names = [f"pet{number}" for number in range(people)]
    context = multiprocessing.get_context(None if method == "default" else method)
    if way == "one after another":
        results = [lookup(work, name) for name in names]
    elif way == "asyncio.gather":
        results = asyncio.run(gather(work, names))
    elif way == "python3 mp.py":  # mp.py's own pattern, with this lookup
        multiprocessing.set_start_method(context.get_start_method(), force=True)
        pets = {f"person{n}": {"pet_name": name} for n, name in enumerate(names)}
        results = mp.find_pet_names(pets, 0, put_lookup)
    else:
        kind = way.split("(")[0]
        workers = 10 if "(10)" in way else os.cpu_count()
        options = {"mp_context": context} if kind == "ProcessPoolExecutor" else {}
        pool_type = getattr(concurrent.futures, kind)
        with pool_type(workers, **options) as pool:
            results = list(pool.map(lookup, [work] * people, names))
    assert len(results) == people


def measure(python, rounds, way, work, people=10, method="default"):
    """Wall times of `rounds` whole runs, or None where this Python has no such way."""
    if way == "python3 mp.py" and work == "sleep":  # the real script, as it runs
        command = [python, str(KIT / "mp.py"), f"--delay={DELAY}"]
    else:
        command = [python, __file__, "--child", way, work, str(people), method]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "BENCHMARK_WORK": work},
            check=False,
        )
        times.append(time.perf_counter() - started)
        if "has no attribute 'InterpreterPoolExecutor'" in done.stderr.decode():
            return None
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)}:\n{done.stderr.decode()}")
    return times


def cell(times):
    """The median, and the fastest and slowest, in seconds."""
    if times is None:
        return "not in this Python"
    return f"{statistics.median(times):.2f} s ({min(times):.2f} to {max(times):.2f})"


def table_1(python, rounds):
    print(f"Ten lookups of {DELAY} s, each way, under the default start method:\n")
    print("| way | waiting (sleep) | computing (cpu) |\n|---|---|---|")
    for way in WAYS:
        figures = [
            cell(measure(python, rounds, way, work)) for work in ("sleep", "cpu")
        ]
        print(f"| {way} | {' | '.join(figures)} |", flush=True)


def table_2(python, rounds, methods):
    cores = os.cpu_count()
    print("\nLookups that do nothing: one process per person, against a pool:\n")
    print(f"| people | start method | mp.py's way | ProcessPoolExecutor({cores}) |")
    print("|---|---|---|---|")
    for people in (10, 100, 1000):
        for method in methods:
            figures = [
                cell(measure(python, rounds, way, "none", people, method))
                for way in ("python3 mp.py", "ProcessPoolExecutor(cores)")
            ]
            print(f"| {people:,} | {method} | {' | '.join(figures)} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="default: this one")
    parser.add_argument("--table", choices=["1", "2"], help="default: both")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        way, work, people, method = args.child
        if int(people) > 500:  # a process per person needs open files
            import resource

            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return child(way, work, int(people), method)
    describe = "import sys, multiprocessing as m; print(sys.version.split()[0], "
    describe += "m.get_start_method(), m.get_all_start_methods())"
    about = subprocess.run(
        [args.python, "-c", describe], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=2)
    print(
        f"CPython {about[0]} (default start method {about[1]}), "
        f"{os.cpu_count()} cores, {args.rounds} rounds\n"
    )
    if args.table in (None, "1"):
        table_1(args.python, args.rounds)
    if args.table in (None, "2"):
        table_2(args.python, args.rounds, ast.literal_eval(about[2]))
    return None


if __name__ == "__main__":
    main()
