"""Look up ten pet names in parallel: one process per person, one Queue for the results.

A runnable version of the 2019 post "Parallel Processing with Python and
Multiprocessing using Queue". Each lookup waits two seconds, standing in for
slow work. The ten processes wait at the same time, so the whole run takes
about two seconds instead of twenty. Results arrive in the order the lookups
finish, which changes from run to run.

    $ python3 mp.py
    adding to queue
    ...                    (ten lines in all)
    consuming from queue:
    ['pet name: max', 'pet name: sylvester', ...]

Options: --work cpu makes each lookup compute instead of wait, --timeline draws
when each lookup ran, and --timeout ends a run whose lookup never finishes.
"""

import argparse
import contextlib
import errno
import math
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
    """Stand in for slow work: wait `delay` seconds, then report the pet name.

    Reporting is the post's: a line on stdout, then the result on the queue
    `output`, as (person, result) so that the parent knows whose result it is.
    """
    time.sleep(delay)
    # One write, flushed before the put: lines from ten processes never run into
    # each other, and all ten are out before the parent prints anything.
    sys.stdout.write("adding to queue\n")
    sys.stdout.flush()
    output.put((person, f"pet name: {pet_name}"))


def compute_pet_name(person: str, pet_name: str, output, delay: float = DELAY) -> None:
    """Stand in for CPU-bound work: compute for `delay` seconds of this thread's
    own CPU time, then report the pet name just as get_pet_name() does."""
    done_at = time.thread_time() + delay
    while time.thread_time() < done_at:
        sum(number * number for number in range(1000))
    get_pet_name(person, pet_name, output, delay=0)


def find_pet_names(
    pet_map: Mapping[str, Mapping[str, str]],
    delay: float = DELAY,
    start_method: str | None = None,
    lookup: Callable[[str, str, object, float], None] = get_pet_name,
    timeout: float | None = None,
    times: dict[str, tuple[float, float]] | None = None,
) -> list[str]:
    """Look up every pet name, one process per person; return the results as they arrive.

    lookup is what each worker runs: get_pet_name (waits) or compute_pet_name
    (computes). start_method is "fork", "spawn" or "forkserver"; None means
    multiprocessing's default, or the one set with set_start_method(). A lookup
    that runs past `timeout` seconds fails the run. If `times` is given, it gets
    {person: (started, arrived)} for each result, in time.monotonic() seconds.
    """
    pet_names, delay, timeout = check_input(pet_map, delay, timeout)
    context = multiprocessing.get_context(start_method)
    output = make_queue(context)  # the one queue that every worker puts its result on
    processes = {
        person: context.Process(
            target=run_lookup, args=(lookup, person, pet_name, output, delay)
        )
        for person, pet_name in pet_names.items()
    }
    started: dict[str, float] = {}
    results: dict[str, str] = {}  # person -> result, in the order they arrived
    with stop_all_on_error(processes):
        for person, process in processes.items():
            started[person] = time.monotonic()
            start_worker(process, len(processes))
        # Drain before join: a worker exits only once all it put on the queue is
        # in the pipe, and the pipe, shared by every worker, holds about 64 KB.
        while len(results) < len(processes):
            waiting = {p: processes[p] for p in processes if p not in results}
            person, results[person] = next_result(output, waiting, started, timeout)
            if times is not None:
                times[person] = (started[person], time.monotonic())
        for process in processes.values():
            process.join()
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    """The command line: run the lookups, print the post's lines, return the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    lookup = compute_pet_name if args.work == "cpu" else get_pet_name
    times: dict[str, tuple[float, float]] = {}
    try:
        with stop_on_signals():
            began = time.monotonic()
            results = find_pet_names(
                pet_maps, args.delay, args.start_method, lookup, args.timeout, times
            )
            wall = time.monotonic() - began
            # Printed once every worker has exited, so it always follows their lines.
            print("consuming from queue:")
            print(results)
            if args.timeline:
                best = len(times) if args.work == "sleep" else usable_cores()
                print(draw_timeline(times, wall, args.delay, min(best, len(times))))
            sys.stdout.flush()  # so that a closed stdout shows up here, not at exit
    except BrokenPipeError:  # stdout was closed early, as by `python3 mp.py | head -1`
        silence_stdout()
        return 1
    except (PetLookupError, CannotStartError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except PetMapError as error:
        print(f"{parser.prog}: error in pets.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except Stopped as stop:
        print(f"{parser.prog}: stopped by {stop.signal.name}", file=sys.stderr)
        return 128 + stop.signal
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The command line's options; with none, the run is the post's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--delay",
        type=seconds,
        default=DELAY,
        metavar="SECONDS",
        help="how long each lookup waits or computes (default: %(default)s)",
    )
    parser.add_argument(
        "--work",
        choices=["sleep", "cpu"],
        default="sleep",
        help="sleep: each lookup waits, as in the post (default); "
        "cpu: each lookup computes for --delay seconds of CPU time",
    )
    parser.add_argument(
        "--start-method",
        choices=multiprocessing.get_all_start_methods(),
        help="how to start the worker processes (default: this Python's default on this "
        "platform, or the one a program set with multiprocessing.set_start_method)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="end the run if a lookup takes longer than this (default: no limit)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="after the results, draw when each lookup ran, and the speedup",
    )
    return parser


# Each worker process runs run_lookup(): the lookup, with the worker's signals
# set up first, and any failure sent back to the parent as a message.


def run_lookup(lookup: Callable, person: str, pet_name: str, output, delay: float) -> None:
    """What each worker runs: set up the worker, then one lookup, reporting any failure."""
    become_worker()
    try:
        lookup(person, pet_name, output, delay)
    except BrokenPipeError:
        # stdout was closed early: nobody reads on, so tell the parent to end quietly.
        silence_stdout()
        output.put((person, BrokenPipeError()))
    except Exception as error:  # noqa: BLE001 (any failure is reported to the parent)
        failure = f"lookup for {person!r} raised {type(error).__name__}: {error}"
        output.put((person, PetLookupError(failure)))


def become_worker() -> None:
    """Set up this worker's signals, and make it end if its parent is gone.

    Ctrl-C reaches every process in the terminal's process group. Only the
    parent acts on it (it stops the workers), so the workers ignore it and print
    no traceback. SIGTERM and SIGHUP end a worker at once, as by default. The
    parent held these signals back while it started this process; let them in.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stop_signal in STOP_SIGNALS[1:]:
        signal.signal(stop_signal, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # A parent killed with SIGKILL cannot stop its workers. Its end closes the
    # pipe behind parent_process().sentinel, so a thread here waits for that.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=exit_when_ready, args=(parent.sentinel,), daemon=True).start()


def exit_when_ready(sentinel: int) -> None:
    """Wait until the parent process is gone, then end this worker at once."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


# The parent's helpers: each keeps one kind of trouble out of find_pet_names().

STOP_SIGNALS = [
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
]


def make_queue(context):
    """The run's Queue, or CannotStartError if this machine cannot make one."""
    try:
        return context.Queue()
    except (ImportError, OSError) as error:  # no working /dev/shm, as on AWS Lambda
        raise CannotStartError(
            "multiprocessing's Queue needs POSIX semaphores, and they are not "
            f"available here ({error})"
        ) from None


def start_worker(process, people: int) -> None:
    """Start one worker, or raise CannotStartError naming the limit that stopped it.

    Ctrl-C, SIGTERM and SIGHUP are held back meanwhile: the parent is never
    interrupted halfway through a start, and the new process inherits the hold,
    so no signal hits it while it is still starting up (spawn takes a while).
    """
    with signals_held():
        try:
            process.start()
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.EAGAIN):
                raise
            raise CannotStartError(
                f"cannot start {people} workers, one per person: {error.strerror}"
                " (see the limits `ulimit -n` and `ulimit -u`)"
            ) from None


def next_result(output, waiting: dict, started: dict, timeout: float | None) -> tuple:
    """Wait for the next (person, result); raise as soon as a lookup has failed.

    A blocking get() would wait forever for a worker that died or hangs, so
    wait in short steps and check on the workers in between.
    """
    while True:
        # Taken before the wait: a worker that has exited has put all it sent in
        # the pipe, so if the wait then finds nothing, that worker sent nothing.
        exited = {p for p, process in waiting.items() if process.exitcode is not None}
        with contextlib.suppress(queue.Empty):
            person, answer = output.get(timeout=POLL)
            if isinstance(answer, Exception):
                raise answer
            return person, answer
        check_on_workers(waiting, exited, started, timeout)


def check_on_workers(waiting: dict, exited: set, started: dict, timeout) -> None:
    """Raise PetLookupError for the first awaited worker that died, ended without
    a result, or has run past the time limit."""
    for person, process in waiting.items():
        code = process.exitcode
        if code is not None and code < 0:
            why = f"was killed by {signal.Signals(-code).name}"
        elif code:
            why = f"exited with status {code}"
        elif person in exited:
            why = "ended without sending its result"
        elif timeout is not None and time.monotonic() - started[person] > timeout:
            why = f"ran past the time limit of {timeout:g} s"
        else:
            continue
        raise PetLookupError(f"lookup for {person!r} {why}")


@contextlib.contextmanager
def stop_all_on_error(processes: dict) -> Iterator[None]:
    """On any error, Ctrl-C and SIGTERM included, stop the workers that still run."""
    try:
        yield
    except BaseException:
        with signals_held():  # a second Ctrl-C must not cut the clean-up short
            stop_workers(list(processes.values()))
        raise


def stop_workers(processes: list) -> None:
    """Ask every running worker to stop (SIGTERM); kill those still there after GRACE."""
    running = [process for process in processes if process.is_alive()]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + GRACE
    for process in running:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in running:
        if process.is_alive():  # it ignores SIGTERM
            process.kill()
            process.join()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold back Ctrl-C, SIGTERM and SIGHUP until the block ends (POSIX only)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Stopped, so they stop a run as
    Ctrl-C does: workers stopped, one line on stderr."""

    def stop(signal_number: int, frame) -> None:
        raise Stopped(signal.Signals(signal_number))

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS[1:]}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def check_input(pet_map: Mapping, delay: float, timeout: float | None) -> tuple:
    """Return {person: pet name}, the delay and the timeout, or raise an error that says what is wrong."""
    delay = seconds(delay, "delay")
    timeout = None if timeout is None else seconds(timeout, "timeout")
    if not isinstance(pet_map, Mapping):
        raise PetMapError(f"the pet map must be a mapping, got {type(pet_map).__name__}")
    pet_names = {}
    for person, entry in pet_map.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):
            example = {"pet_name": "max"}
            raise PetMapError(f"{person!r} needs an entry like {example}, got {entry!r}")
        pet_names[person] = entry["pet_name"]
    check_open_files(len(pet_names))
    return pet_names, delay, timeout


def seconds(value: str | float, what: str = "seconds") -> float:
    """A finite number of seconds, 0 or more. Also the type of --delay and --timeout.

    argparse turns the ValueError into its usual "invalid seconds value" error.
    """
    number = float(value)
    if not 0 <= number < math.inf:
        raise ValueError(f"{what} must be a finite number of seconds, 0 or more: {value!r}")
    return number


def check_open_files(people: int) -> None:
    """Refuse, before anything starts, more workers than the limit on open files allows."""
    try:
        import resource  # POSIX only
    except ImportError:
        return
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    in_use = len(os.listdir("/dev/fd")) if os.path.isdir("/dev/fd") else 3
    needed = 2 * people + in_use + 6  # the parent keeps 2 pipe ends per worker
    if limit != resource.RLIM_INFINITY and needed > limit:
        raise CannotStartError(
            f"{people} workers, one per person, need about {needed} open files, "
            f"but the limit is {limit} (ulimit -n)"
        )


def usable_cores() -> int:
    """How many cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def draw_timeline(times: dict, wall: float, delay: float, best: int) -> str:
    """One row per person, from its process's start to its result's arrival, on a
    common axis in seconds; then the speedup over one lookup after another."""
    origin = min(start for start, _ in times.values())
    end = max(arrived for _, arrived in times.values()) - origin
    label = min(max(len(person) for person in times), 16) + 2
    width = 79 - label  # so that no line is wider than 80 columns
    scale = (width - 1) / max(end, 1e-3)  # columns per second
    steps = [m * 10**e for e in range(-3, 5) for m in (1, 2, 5)]
    step = next(s for s in steps if s * scale >= 8)
    axis = [" "] * width
    for tick in range(int(end / step) + 1):
        text = f"{round(tick * step, 3):g}"
        column = round(tick * step * scale)
        if column + len(text) <= width:
            axis[column : column + len(text)] = text
    lines = ["seconds".ljust(label) + "".join(axis).rstrip()]
    for person, (start, arrived) in sorted(times.items(), key=lambda item: item[1]):
        first = round((start - origin) * scale)
        last = round((arrived - origin) * scale)
        lines.append(person[: label - 2].ljust(label) + " " * first + "=" * (last - first + 1))
    work = len(times) * delay
    lines.append(
        f"{len(times)} lookups of {round(delay, 3)} s = {round(work, 3)} s of work "
        f"in {wall:.2f} s: {work / wall:.1f}x speedup (at most {best}x here)"
    )
    return "\n".join(lines)


def silence_stdout() -> None:
    """Send what is left for stdout to /dev/null, as the Python docs' note on SIGPIPE advises."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class PetMapError(ValueError):
    """The pet map is not shaped like pets.pet_maps; raised before any process starts."""


class PetLookupError(RuntimeError):
    """A person's lookup failed. Raised once every other worker has been stopped."""


class CannotStartError(RuntimeError):
    """This machine cannot run the lookups: too many people for its limits, or no semaphores."""


class Stopped(BaseException):
    """SIGTERM or SIGHUP asked the run to stop. Like KeyboardInterrupt, not an error."""

    def __init__(self, received: signal.Signals) -> None:
        super().__init__(received.name)
        self.signal = received


# Under the spawn and forkserver start methods every worker imports this file:
# the guard keeps each of them from starting workers of its own.
if __name__ == "__main__":
    sys.exit(main())
