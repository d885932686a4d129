"""Time mp.py against the other ways to run the same lookups, as whole processes.

Three tables, each from the wall time of whole `python` processes (start-up
included), run one at a time, with the median, fastest and slowest of the rounds:

- methods: `python3 mp.py` (ten lookups of 2 s) against the same lookups on a
  ProcessPoolExecutor(10), under each start method.
- ways: ten lookups of 0.5 s, sleeping and computing, run four ways: one after
  another in one process, on a ThreadPoolExecutor(10), by mp.py, and on a
  ProcessPoolExecutor(10), with the default start method.
- scale: one process per person (mp.py --delay 0) for 10, 100 and 1,000
  people, under each start method, against a ProcessPoolExecutor with one
  worker per core.

    python3 .ci/benchmark.py [--rounds N] [--tables methods,ways,scale]

CI does not run it: timings on a shared machine would be noise.
"""

import argparse
import concurrent.futures
import contextlib
import multiprocessing
import os
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

import mp


def lookup_and_return(pet_name: str, delay: float, work: str) -> str:
    """The kit's lookup as a task for any executor: its result is returned, not queued."""
    results = queue.SimpleQueue()
    lookup = mp.compute_pet_name if work == "cpu" else mp.get_pet_name
    lookup(pet_name, results, delay)
    return results.get()


def run_way(way: str, work: str, delay: float, people: int, start_method: str) -> None:
    """Run the lookups one way and print the post's lines (the caller discards them)."""
    pets = [entry["pet_name"] for entry in load_pets(people).values()]
    args = (pets, [delay] * len(pets), [work] * len(pets))
    if way == "serial":
        results = list(map(lookup_and_return, *args))
    elif way == "threads":
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lookup_and_return, *args))
    else:  # "pool": one worker per person up to 10; "cores": one per core
        workers = 10 if way == "pool" else os.cpu_count()
        context = multiprocessing.get_context(start_method)
        with concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context
        ) as pool:
            results = list(pool.map(lookup_and_return, *args))
    print("consuming from queue:")
    print(results)


def load_pets(people: int) -> dict:
    """The post's ten people, or `people` made-up ones."""
    if people == 10:
        return mp.load_pet_maps(KIT / "pets.py")
    return {f"person{n}": {"pet_name": f"pet{n}"} for n in range(people)}


def wall_time(command: list[str], cwd: Path = KIT) -> float:
    """Seconds one whole process takes, from start to exit; fails if it fails."""
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def kit_with(people: int, folder: Path) -> Path:
    """A copy of mp.py in `folder`, beside a pets.py of `people` people."""
    folder.mkdir()
    shutil.copy(KIT / "mp.py", folder)
    (folder / "pets.py").write_text(f"pet_maps = {load_pets(people)!r}\n")
    return folder


def measure(commands: dict, rounds: int) -> dict:
    """Run every command once a round, in turn, so that all see the same load."""
    times = {key: [] for key in commands}
    for _ in range(rounds):
        for key, (command, cwd) in commands.items():
            times[key].append(wall_time(command, cwd))
    return times


def show(title: str, times: dict) -> None:
    """Print one table: a row per command, median (fastest to slowest)."""
    print(f"\n{title}")
    for key, seconds in times.items():
        label = ", ".join(str(part) for part in key)
        print(
            f"  {label:<44} {statistics.median(seconds):7.2f} s"
            f"  ({min(seconds):.2f} to {max(seconds):.2f})",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="how many times to run each command; the table shows the median, "
        "fastest and slowest (default: 5)",
    )
    parser.add_argument(
        "--tables",
        default="methods,ways,scale",
        help="which tables to make, separated by commas: methods, ways, scale "
        "(default: all three)",
    )
    parser.add_argument(
        "--run",
        nargs=5,
        metavar=("WAY", "WORK", "DELAY", "PEOPLE", "METHOD"),
        help="run the lookups one way in this process, and print the post's "
        "lines; the tables are timed with this (WAY: serial, threads, pool or "
        "cores; WORK: sleep or cpu)",
    )
    args = parser.parse_args()
    if args.run:
        way, work, delay, people, method = args.run
        run_way(way, work, float(delay), int(people), method)
        return
    # 1,000 workers need about 2,000 open files: use all that the hard limit allows.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    python, methods = sys.executable, multiprocessing.get_all_start_methods()
    default = multiprocessing.get_start_method()
    me = [python, __file__, "--run"]
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.rounds} rounds;"
        " wall time of each whole process, median (fastest to slowest)"
    )
    if "methods" in args.tables:
        commands = {}
        for method in methods:
            mine = [python, "mp.py", "--start-method", method]
            commands[method, "mp.py"] = (mine, KIT)
            pool = [*me, "pool", "sleep", str(mp.DELAY), "10", method]
            commands[method, "ProcessPoolExecutor(10)"] = (pool, KIT)
        show("ten lookups of 2 s, by start method", measure(commands, args.rounds))
    if "ways" in args.tables:
        commands = {}
        for work in ("sleep", "cpu"):
            for way, label in [
                ("serial", "one after another"),
                ("threads", "ThreadPoolExecutor(10)"),
            ]:
                commands[work, label] = ([*me, way, work, "0.5", "10", default], KIT)
            mine = [python, "mp.py", "--work", work, "--delay", "0.5"]
            commands[work, "mp.py"] = (mine, KIT)
            pool = [*me, "pool", work, "0.5", "10", default]
            commands[work, "ProcessPoolExecutor(10)"] = (pool, KIT)
        title = f"ten lookups of 0.5 s, start method {default}"
        show(title, measure(commands, args.rounds))
    if "scale" in args.tables:
        with contextlib.ExitStack() as cleanup:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            commands = {}
            for people in (10, 100, 1000):
                kit = kit_with(people, folder / str(people))
                for method in methods:
                    mine = [python, "mp.py", "--delay", "0", "--start-method", method]
                    commands[people, method, "mp.py"] = (mine, kit)
                    pool = [*me, "cores", "sleep", "0", str(people), method]
                    commands[people, method, "ProcessPoolExecutor(cores)"] = (pool, KIT)
            show("people, one process each, --delay 0", measure(commands, args.rounds))


if __name__ == "__main__":
    main()
