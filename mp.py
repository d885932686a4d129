"""Look up ten pet names in parallel: one process per person, one Queue for the results.

A runnable version of the 2019 post "Parallel Processing with Python and
Multiprocessing using Queue". Each lookup sleeps for two seconds, standing in
for slow work. The ten processes sleep at the same time, so the whole run takes
about two seconds instead of twenty. Results arrive in the order the lookups
finish, which changes from run to run.

    $ python3 mp.py
    adding to queue
    ...                    (ten lines in all)
    consuming from queue:
    ['pet name: max', 'pet name: sylvester', ...]
"""

import argparse
import contextlib
import math
import multiprocessing
import queue
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue

from pets import pet_maps

DELAY = 2.0  # seconds each lookup sleeps, standing in for slow work
POLL = 0.1  # seconds between checks on the workers while waiting for a result

Lookup = Callable[[str, Queue, float], None]


class PetMapError(ValueError):
    """The pet map is not shaped like pets.pet_maps; raised before any process starts."""


class PetLookupError(RuntimeError):
    """A person's lookup failed. Raised once every other worker has been stopped."""


def get_pet_name(pet_name: str, output: Queue, delay: float = DELAY) -> None:
    """Look up one pet name (the sleep stands in for slow work); put it on the queue."""
    time.sleep(delay)
    # One write, flushed before the put: lines from ten processes never run into
    # each other, and all ten are out before the parent prints anything.
    sys.stdout.write("adding to queue\n")
    sys.stdout.flush()
    output.put(f"pet name: {pet_name}")


def run_lookup(
    lookup: Lookup, person: str, pet_name: str, output: Queue, delay: float
) -> None:
    """What each worker runs: one lookup, with any exception sent back as a message."""
    # Ctrl-C reaches every process in the terminal's process group. Only the
    # parent acts on it: it stops the workers, so they need not print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        lookup(pet_name, output, delay)
    except Exception as error:  # noqa: BLE001 (any failure is reported to the parent)
        failure = f"lookup for {person!r} raised {type(error).__name__}: {error}"
        output.put(PetLookupError(failure))


def find_pet_names(
    pet_map: Mapping[str, Mapping[str, str]],
    delay: float = DELAY,
    start_method: str | None = None,
    lookup: Lookup = get_pet_name,
) -> list[str]:
    """Look up every pet name, one process per person; return results as they come.

    start_method is "fork", "spawn" or "forkserver"; None uses multiprocessing's
    default, including one a program set with multiprocessing.set_start_method().
    """
    pet_names, delay = check_input(pet_map, delay)
    context = multiprocessing.get_context(start_method)
    output = context.Queue()
    processes = {
        person: context.Process(
            target=run_lookup, args=(lookup, person, pet_name, output, delay)
        )
        for person, pet_name in pet_names.items()
    }
    with stop_all_on_error(processes):
        for process in processes.values():
            process.start()
        # Drain before join: a child cannot exit until the parent has read what
        # it put on the queue, so joining first deadlocks on large results.
        results = [next_result(output, processes) for _ in processes]
    for process in processes.values():
        process.join()
    return results


def check_input(pet_map: Mapping, delay: float) -> tuple[dict[str, str], float]:
    """Return {person: pet name} and the delay, or raise an error that says what is wrong."""
    delay = seconds(delay)
    if not isinstance(pet_map, Mapping):
        raise PetMapError(
            f"the pet map must be a mapping, got {type(pet_map).__name__}"
        )
    pet_names = {}
    for person, entry in pet_map.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):
            example = {"pet_name": "max"}
            raise PetMapError(
                f"{person!r} needs an entry like {example}, got {entry!r}"
            )
        pet_names[person] = entry["pet_name"]
    return pet_names, delay


def next_result(output: Queue, processes: dict[str, BaseProcess]) -> str:
    """Wait for the next result; raise PetLookupError as soon as a lookup has failed.

    A blocking get() would wait forever for a worker that died, so wait in short
    steps and look at the workers' exit codes in between.
    """
    while True:
        # Taken before the wait: if every worker had already exited and the
        # queue then stays empty, no result is on its way.
        all_exited = all(process.exitcode is not None for process in processes.values())
        try:
            message = output.get(timeout=POLL)
        except queue.Empty:
            for person, process in processes.items():
                code = process.exitcode
                if code is not None and code < 0:
                    why = f"was killed by {signal.Signals(-code).name}"
                    raise PetLookupError(f"lookup for {person!r} {why}") from None
                if code:
                    why = f"exited with status {code}"
                    raise PetLookupError(f"lookup for {person!r} {why}") from None
            if all_exited:
                raise PetLookupError(
                    "a lookup ended without sending its result"
                ) from None
            continue
        if isinstance(message, PetLookupError):
            raise message
        return message


@contextlib.contextmanager
def stop_all_on_error(processes: dict[str, BaseProcess]) -> Iterator[None]:
    """On any error, Ctrl-C included, stop the workers that still run; wait for them."""
    try:
        yield
    except BaseException:
        running = [process for process in processes.values() if process.is_alive()]
        for process in running:
            process.terminate()
        for process in running:
            process.join()
        raise


def seconds(value: str | float) -> float:
    """A delay as a float: a finite number of seconds, 0 or more. Also the type of --delay.

    argparse turns the ValueError into its usual "invalid seconds value" error.
    """
    delay = float(value)
    if not 0 <= delay < math.inf:
        raise ValueError(
            f"delay must be a finite number of seconds, 0 or more: {value!r}"
        )
    return delay


def main(argv: list[str] | None = None) -> int:
    """The command line: run the lookups, print the post's lines, return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--delay",
        type=seconds,
        default=DELAY,
        metavar="SECONDS",
        help="how long each lookup sleeps, standing in for work (default: %(default)s)",
    )
    parser.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        help="how to start the worker processes (default: this Python's default on this "
        "platform, or the one a program set with multiprocessing.set_start_method)",
    )
    args = parser.parse_args(argv)
    try:
        results = find_pet_names(pet_maps, args.delay, args.start_method)
    except PetLookupError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except PetMapError as error:
        print(f"{parser.prog}: error in pets.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    # Printed once every worker has exited, so it always follows their ten lines.
    print("consuming from queue:")
    print(results)
    return 0


# Under the spawn and forkserver start methods every worker imports this file:
# the guard keeps each of them from starting ten workers of its own.
if __name__ == "__main__":
    sys.exit(main())
