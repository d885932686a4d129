"""Time `python3 mp.py` against the same ten lookups on a ProcessPoolExecutor.

Each round runs, for every start method, the whole mp.py process and then the
whole process of an equivalent concurrent.futures.ProcessPoolExecutor(max_workers=10)
program, so both see the same machine load. Prints the median, fastest and
slowest wall time of each.

    python3 .ci/benchmark.py [--rounds N]
"""

import argparse
import concurrent.futures
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from mp import DELAY  # the kit's folder is on sys.path from the line above
from pets import pet_maps


def pool_lookup(pet_name: str) -> str:
    """The post's lookup as a pool task: sleep, print, return the result."""
    time.sleep(DELAY)
    print("adding to queue", flush=True)
    return f"pet name: {pet_name}"


def run_pool(start_method: str) -> None:
    """The same ten lookups on a ProcessPoolExecutor with ten workers."""
    context = multiprocessing.get_context(start_method)
    names = [entry["pet_name"] for entry in pet_maps.values()]
    with concurrent.futures.ProcessPoolExecutor(10, mp_context=context) as pool:
        results = list(pool.map(pool_lookup, names))
    print("consuming from queue:")
    print(results)


def wall_time(command: list[str]) -> float:
    """Seconds one whole process takes, from start to exit; fails if it fails."""
    started = time.perf_counter()
    subprocess.run(command, cwd=KIT, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", metavar="START_METHOD", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pool:
        run_pool(args.pool)
        return
    methods = multiprocessing.get_all_start_methods()
    programs = {
        "mp.py": ["mp.py", "--start-method"],
        "ProcessPoolExecutor": [__file__, "--pool"],
    }
    commands = {
        (method, program): [sys.executable, *arguments, method]
        for method in methods
        for program, arguments in programs.items()
    }
    times = {key: [] for key in commands}
    for _ in range(args.rounds):
        for key, command in commands.items():
            times[key].append(wall_time(command))
    print(
        f"Python {sys.version.split()[0]}, {args.rounds} rounds, wall time of the whole process:"
    )
    print(
        f"{'start method':<12} {'program':<20} {'median':>7} {'fastest':>8} {'slowest':>8}"
    )
    for (method, program), seconds in times.items():
        print(
            f"{method:<12} {program:<20} {statistics.median(seconds):>6.2f}s"
            f" {min(seconds):>7.2f}s {max(seconds):>7.2f}s"
        )


if __name__ == "__main__":
    main()
