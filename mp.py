"""Look up ten pet names in parallel: one process per person, one Queue for the results.

The 2019 post "Parallel Processing with Python and Multiprocessing using Queue"."""

import argparse
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from pets import pet_maps

DELAY = 2.0  # seconds each lookup takes, standing in for slow work
POLL = 0.1  # seconds between checks on the workers while waiting for a result
GRACE = 0.5  # seconds a worker gets to stop before it is killed


def get_pet_name(person: str, pet_name: str, output, delay: float = DELAY) -> None:
    """Stand in for slow work: wait `delay` seconds, then report the pet name."""
    time.sleep(delay)
    # One write, flushed before the put: lines from ten processes never run into
    # each other, and all ten are out before the parent prints anything.
    sys.stdout.write("adding to queue\n")
    sys.stdout.flush()
    # The person goes with the result, so that the parent knows whose it is.
    output.put((person, f"pet name: {pet_name}"))


def compute_pet_name(person: str, pet_name: str, output, delay: float = DELAY) -> None:
    """Stand in for CPU-bound work: compute for `delay` seconds of CPU, then report."""
    done_at = time.thread_time() + delay  # this thread's own CPU time
    while time.thread_time() < done_at:
        sum(number * number for number in range(1000))
    get_pet_name(person, pet_name, output, delay=0)


def find_pet_names(
    pet_map: Mapping[str, Mapping[str, str]],
    delay: float = DELAY,
    start_method: str | None = None,
    lookup: Callable = get_pet_name,
    timeout: float | None = None,
    times: dict[str, tuple[float, float]] | None = None,
) -> list[str]:
    """Look up every pet name, one process per person; return the results as they come.

    Each worker runs `lookup`; `times`, if given, gets {person: (started, arrived)}."""
    pet_names, delay, timeout = check_input(pet_map, delay, timeout)
    ctx = multiprocessing.get_context(start_method)
    output = make_queue(ctx)  # the one queue every worker puts its result on
    processes = {
        person: ctx.Process(target=worker, args=(lookup, person, pet, output, delay))
        for person, pet in pet_names.items()
    }
    times = {} if times is None else times
    started: dict[str, float] = {}
    results: dict[str, str] = {}  # person -> result, in the order they arrived
    with stop_all_on_error(processes):
        for person, process in processes.items():
            started[person] = time.monotonic()
            # Held back, no signal stops the parent halfway through a start, and the
            # new process inherits the hold: no signal can reach it while it is
            # still starting up (spawn takes a while) and make it print a traceback.
            with signals_held():
                process.start()
        # Drain before join: a worker exits only once all it put on the queue is
        # in the pipe, and the pipe, shared by every worker, holds about 64 KB.
        while len(results) < len(processes):
            waiting = {p: processes[p] for p in processes if p not in results}
            person, results[person] = next_result(output, waiting, started, timeout)
            times[person] = (started[person], time.monotonic())
        for process in processes.values():
            process.join()
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    """The command line: run the lookups, print the post's lines, return the exit status."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    option, methods = parser.add_argument, multiprocessing.get_all_start_methods()
    option("--delay", type=seconds, default=DELAY, help="seconds each lookup takes")
    option("--work", choices=["sleep", "cpu"], default="sleep", help="wait or compute")
    option("--start-method", choices=methods, help="None: this Python's default here")
    option("--timeout", type=seconds, help="seconds a lookup may take; None: no limit")
    option("--timeline", action="store_true", help="then draw when each lookup ran")
    args = parser.parse_args(argv)
    lookup = compute_pet_name if args.work == "cpu" else get_pet_name
    for number in END_SIGNALS:  # so that they, too, stop the workers on their way
        signal.signal(number, exit_on_signal)
    times: dict[str, tuple[float, float]] = {}
    try:
        results = find_pet_names(
            pet_maps, args.delay, args.start_method, lookup, args.timeout, times
        )
        # Printed once every worker has exited, so it always follows their lines.
        print("consuming from queue:")
        print(results)
        if args.timeline:
            best = len(times) if args.work == "sleep" else usable_cores()
            print(draw_timeline(times, args.delay, min(best, len(times))))
        sys.stdout.flush()  # so that a closed stdout shows up here, not at exit
    except BrokenPipeError:  # stdout closed early, as by `python3 mp.py | head -1`
        silence_stdout()
        return 1
    except (PetMapError, PetLookupError, CannotStartError) as error:
        where = " in pets.py" if isinstance(error, PetMapError) else ""
        print(f"{PROG}: error{where}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


# What each worker process runs: worker() sets the process up, runs the lookup,
# and sends any failure back to the parent as a message.


def worker(lookup: Callable, person: str, pet_name: str, output, delay) -> None:
    """Set up this worker, then run one lookup, reporting any failure to the parent."""
    become_worker()
    try:
        lookup(person, pet_name, output, delay)
    except BrokenPipeError:  # stdout closed early: tell the parent to end quietly
        silence_stdout()
        output.put((person, BrokenPipeError()))
    except Exception as error:  # noqa: BLE001 (any failure is reported to the parent)
        failure = f"lookup for {person!r} raised {type(error).__name__}: {error}"
        output.put((person, PetLookupError(failure)))


def become_worker() -> None:
    """Set up this worker's signals, and end it when its parent is gone."""
    # Ctrl-C reaches every process in the terminal's group. Only the parent acts
    # on it, by stopping the workers, so they ignore it and print no traceback.
    # SIGTERM and SIGHUP end a worker at once. The parent held all three back
    # while it started this process; let them in now.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for number in END_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # A parent killed by SIGKILL stops nobody, but its end closes the pipe behind
    # parent_process().sentinel: a thread waits for that, then ends this worker.
    sentinel = multiprocessing.parent_process().sentinel
    threading.Thread(target=exit_after, args=(sentinel,), daemon=True).start()


def exit_after(sentinel) -> None:
    """Wait until the parent process is gone, then end this worker at once."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


# The parent's helpers: each keeps one kind of trouble out of find_pet_names().

PROG = os.path.basename(sys.argv[0])  # "mp.py" in messages, as argparse says it
END_SIGNALS = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
STOP_SIGNALS = [signal.SIGINT, *END_SIGNALS]  # Ctrl-C, SIGTERM and SIGHUP


def make_queue(ctx):
    """The run's Queue, or CannotStartError if this machine cannot make one."""
    try:
        return ctx.Queue()
    except (ImportError, OSError) as error:  # no working /dev/shm, as on AWS Lambda
        raise CannotStartError(
            "multiprocessing's Queue needs POSIX semaphores, and they are not "
            f"available here ({error})"
        ) from None


def next_result(output, waiting: dict, started: dict, timeout) -> tuple[str, str]:
    """Wait for the next (person, result); raise as soon as a lookup has failed."""
    # A blocking get() would wait forever for a worker that died or hangs: wait
    # in short steps, and check on the workers in between.
    while True:
        # Taken before the wait: a worker that has exited has put all it sent in
        # the pipe, so if the wait then finds nothing, that worker sent nothing.
        exited = {p for p, process in waiting.items() if process.exitcode is not None}
        with contextlib.suppress(queue.Empty):
            person, answer = output.get(timeout=POLL)
            if isinstance(answer, Exception):
                raise answer
            return person, answer
        for person, process in waiting.items():
            code = process.exitcode
            if code is not None and code < 0:
                failure = f"was killed by {signal.Signals(-code).name}"
            elif code:
                failure = f"exited with status {code}"
            elif person in exited:
                failure = "ended without sending its result"
            elif timeout is not None and time.monotonic() - started[person] > timeout:
                failure = f"ran past the time limit of {timeout:g} s"
            else:
                continue
            raise PetLookupError(f"lookup for {person!r} {failure}")


@contextlib.contextmanager
def stop_all_on_error(processes: dict) -> Iterator[None]:
    """On any error, Ctrl-C and SIGTERM included, stop the workers that still run."""
    try:
        yield
    except BaseException:
        with signals_held():  # a second Ctrl-C must not cut the clean-up short
            running = [p for p in processes.values() if p.is_alive()]
            for process in running:
                process.terminate()
            deadline = time.monotonic() + GRACE
            for process in running:
                process.join(max(0.0, deadline - time.monotonic()))
                if process.is_alive():  # it ignores SIGTERM
                    process.kill()
                    process.join()
        raise


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back until the block ends (POSIX only)."""
    hold = hasattr(signal, "pthread_sigmask")
    if hold:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        if hold:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def exit_on_signal(number: int, frame) -> None:
    """For SIGTERM and SIGHUP: say so, and exit as a shell reports a signal."""
    print(f"{PROG}: stopped by {signal.Signals(number).name}", file=sys.stderr)
    raise SystemExit(128 + number)  # on its way out, it stops the workers


def check_input(pet_map: Mapping, delay: float, timeout: float | None) -> tuple:
    """Return {person: pet name}, the delay and the timeout, or say what is wrong."""
    delay = seconds(delay, "delay")
    timeout = None if timeout is None else seconds(timeout, "timeout")
    if not isinstance(pet_map, Mapping):
        raise PetMapError(f"pet map must be a mapping, not {type(pet_map).__name__}")
    pet_names = {}
    for person, entry in pet_map.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):
            raise PetMapError(f"{person!r} needs an entry like {SHAPE}, got {entry!r}")
        pet_names[person] = entry["pet_name"]
    check_open_files(len(pet_names))
    return pet_names, delay, timeout


SHAPE = {"pet_name": "max"}  # what each person's entry in the pet map looks like


def seconds(value: str | float, what: str = "seconds") -> float:
    """A finite number of seconds, 0 or more; also the type of --delay and --timeout."""
    number = float(value)  # argparse reports a ValueError as "invalid seconds value"
    if not 0 <= number < float("inf"):
        raise ValueError(f"{what} must be finite seconds, 0 or more, not {value!r}")
    return number


def check_open_files(people: int) -> None:
    """Refuse, before anything starts, more workers than the open-files limit allows."""
    if not os.path.isdir("/dev/fd"):  # Windows: no such limit
        return
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    needed = 2 * people + len(os.listdir("/dev/fd")) + 6  # 2 pipe ends per worker
    if limit != resource.RLIM_INFINITY and needed > limit:
        raise CannotStartError(
            f"{people} workers, one per person, need about {needed} open files, "
            f"but the limit is {limit} (ulimit -n)"
        )


def usable_cores() -> int:
    """How many cores this process may run on."""
    cores_allowed = getattr(os, "sched_getaffinity", None)  # not on macOS or Windows
    return len(cores_allowed(0)) if cores_allowed else os.cpu_count() or 1


def draw_timeline(times: dict, delay: float, best: int) -> str:
    """A row per person, from its process's start to its result's arrival; the speedup."""
    origin = min(start for start, _ in times.values())
    wall = max(arrived for _, arrived in times.values()) - origin
    scale = 54 / max(wall, 1e-3)  # columns a second: names take 20, the run 55
    lines = [f"{'seconds':<20}0{f'{wall / 2:.2f}':^53}{wall:.2f}"]  # 0, middle, end
    for person, (start, arrived) in sorted(times.items(), key=lambda item: item[1]):
        first, last = round((start - origin) * scale), round((arrived - origin) * scale)
        lines.append(f"{person[:18]:<20}" + " " * first + "=" * (last - first + 1))
    work = len(times) * delay
    lines.append(
        f"{len(times)} lookups of {round(delay, 3)} s = {round(work, 3)} s of work "
        f"in {wall:.2f} s: {work / wall:.1f}x speedup (at most {best}x here)"
    )
    return "\n".join(lines)


def silence_stdout() -> None:
    """Send what is left for stdout to /dev/null, as the Python docs' note on SIGPIPE does."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class PetMapError(ValueError):
    """The pet map is not shaped like pets.pet_maps; raised before any process starts."""


class PetLookupError(RuntimeError):
    """A person's lookup failed. Raised once every other worker has been stopped."""


class CannotStartError(RuntimeError):
    """This machine cannot run the lookups: too many people for its limits, or no semaphores."""


# Under the spawn and forkserver start methods every worker imports this file:
# the guard keeps each of them from starting workers of its own.
if __name__ == "__main__":
    sys.exit(main())
