"""Look up ten people's pet names at once: one process per person, one Queue for the results.

This is the 2019 post "Parallel Processing with Python and Multiprocessing
using Queue", made safe to copy. Each lookup waits 2 seconds, standing in for
slow work, so the ten lookups take about 2 seconds together instead of 20.

How a result travels, and why the parent reads before it joins:

    worker process (one per person)            parent process
    -------------------------------            --------------
    lookup: output.put(result)
      -> the queue's feeder thread  --\
    lookup: output.put(result)         \
      -> the queue's feeder thread  ----+--> one pipe, ~64 KB --> Supervisor
    ...                                /                          reads results,
    lookup: output.put(result)        /                           then joins
      -> the queue's feeder thread  --/

A worker cannot exit until its feeder thread has written everything it put
into the pipe, and the pipe holds only about 64 KB: a parent that joins the
workers before reading their results can wait for them forever.

Read it top to bottom: the lookups, then find_pet_names() with the post's
steps, then the guard rails, each in a section of its own (the worker's side,
the supervisor that does all the waiting, signals, checks, printing), then
main(), the command line: python3 mp.py --help.
"""

import argparse
import contextlib
import errno
import importlib.util
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

if sys.version_info < (3, 10) or os.name != "posix":  # before anything newer runs
    sys.exit(
        "mp.py needs Python 3.10 or newer on Linux, macOS or another POSIX system; "
        f"this is Python {sys.version.split()[0]} on {sys.platform}"
    )

DELAY = 2.0  # seconds each lookup takes, standing in for slow work


# The lookups: what each worker process runs.


def get_pet_name(pet_name: str, output, delay: float = DELAY) -> None:
    """The post's lookup: wait `delay` seconds, say so, and put the answer on the queue."""
    time.sleep(delay)
    print_line("adding to queue")
    output.put(f"pet name: {pet_name}")


def compute_pet_name(pet_name: str, output, delay: float = DELAY) -> None:
    """The same lookup, but computing for `delay` seconds of CPU time instead of sleeping."""
    done_at = time.thread_time() + delay  # this thread's own CPU time
    while time.thread_time() < done_at:
        sum(number * number for number in range(1000))
    get_pet_name(pet_name, output, delay=0)


# What find_pet_names() takes and gives.

# lookup(pet_name, output, delay): puts one result with output.put(result).
Lookup = Callable[[str, Any, float], object]


class Arrival(NamedTuple):
    """One result as it reached the parent: whose, what, and when (time.monotonic())."""

    person: Hashable
    result: Any
    process_started: float  # when the parent started the worker's process
    lookup_started: float  # when the worker told the parent its lookup began
    arrived: float  # when the result was in the parent's hands


# The post's steps: make the queue, one process per person, start, collect, join.


def find_pet_names(
    pet_map: Mapping[Hashable, Mapping[str, str]],
    delay: float = DELAY,
    start_method: str | None = None,
    lookup: Lookup = get_pet_name,
    timeout: float | None = None,
    arrivals: list[Arrival] | None = None,
) -> list:
    """Look up every pet name, one process per person; return the results as they arrive.

    pet_map: {person: {"pet_name": name}}, shaped like pets.pet_maps.
    delay: seconds each lookup takes; 0 to 86400.
    start_method: "fork", "spawn" or "forkserver"; None means this Python's default.
    lookup: what each worker runs, lookup(pet_name, output, delay). It puts one
        result with output.put(result). Under spawn and forkserver it must be
        importable: a function at the top level of a module.
    timeout: seconds a lookup may run, counted from when it starts (a spawned
        worker's start-up does not count); None means no limit, as in the post.
    arrivals: a list that gets an Arrival for each result the moment it comes
        in, so that a caller keeps every result that arrived even when the run
        fails or is interrupted; --timeline draws from it.

    Raises PetMapError for a badly shaped pet map, before anything starts;
    PetLookupError when a lookup fails, naming the person (the worker's
    traceback is its __cause__); CannotStartError when this machine cannot run
    the workers; StdoutError when stdout cannot be written to. Whatever ends the
    run, Ctrl-C included, every worker and all that its lookup started is
    stopped first.
    """
    pet_names = check_input(pet_map, delay, timeout)
    context = multiprocessing.get_context(start_method)
    arrivals = [] if arrivals is None else arrivals
    with Supervisor(context, timeout, arrivals) as supervisor:
        # Make the queue: every worker puts its result on this one queue.
        output = supervisor.make_queue()
        # One process per person. Each runs worker(), which calls the lookup.
        sendable = pack_lookup(lookup, context)
        for number, (person, pet_name) in enumerate(pet_names.items()):
            args = (output, number, sendable, pet_name, delay)
            supervisor.add(person, context.Process(target=worker, args=args))
        # Start them all: from here on, the lookups run at the same time.
        supervisor.start_all()
        # Collect every result before joining (see the picture at the top).
        supervisor.collect()
        # Join: wait for every worker to exit.
        supervisor.join()
    return [arrival.result for arrival in arrivals]


# What can go wrong, as the exceptions find_pet_names() raises.


class PetMapError(ValueError):
    """The pet map is not shaped like pets.pet_maps; raised before any process starts."""


class PetLookupError(RuntimeError):
    """A person's lookup failed; raised once every worker has been stopped."""

    def __init__(self, message: str, person: Hashable = None) -> None:
        super().__init__(message)
        self.person = person  # whose lookup it was


class CannotStartError(RuntimeError):
    """This machine cannot run the workers: a limit, no semaphores, no temporary folder."""


class StdoutError(OSError):
    """Stdout cannot be written to: closed, full, or its reader gone (errno EPIPE)."""


class RemoteTraceback(Exception):
    """A worker's traceback, as text: the cause of the PetLookupError it led to."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


# The worker's side. Each message a worker puts on the queue is a tuple
# (worker number, kind, details...): the parent knows each number's person.


NO_THREAD = 75  # a worker's exit status when it cannot start a thread
PROCESS_LIMIT = "the limit on processes (ulimit -u, or a container's pids limit)"


def worker(output, number: int, lookup: Lookup | bytes, pet_name: str, delay) -> None:
    """What each worker process runs: set up, run the lookup, tell the parent how it went."""
    outbox = Outbox(output, number)
    try:
        become_worker()
    except RuntimeError:  # "can't start new thread": see Outbox.send()
        os._exit(NO_THREAD)
    try:
        lookup = load_lookup(lookup)
    except Exception as error:  # noqa: BLE001 (reported to the parent, who explains)
        outbox.send("unloadable", f"{type(error).__name__}: {error}")
        return
    outbox.send("started", time.monotonic())  # the lookup's time limit counts from here
    try:
        returned = lookup(pet_name, outbox, delay)
    except StdoutError as error:
        silence_stdout()  # so that Python's own flush at exit fails no more
        outbox.send("stdout", error.errno, error.strerror)
    except Exception as error:  # noqa: BLE001 (any failure is reported to the parent)
        failure = outbox.problem or f"raised {type(error).__name__}: {error}"
        outbox.send("failed", failure, *remote_traceback(error))
    else:
        if outbox.problem:  # the lookup caught the error its put() raised
            outbox.send("failed", outbox.problem, None, None)
        elif not outbox.sent:
            hint = "" if returned is None else f" (it returned {returned!r} instead)"
            outbox.send("failed", f"ended without putting a result{hint}", None, None)


class Outbox:
    """The `output` a lookup gets: put() sends one result to the parent, tagged with
    the worker's number, so a lookup puts just its result, as in the post."""

    def __init__(self, queue, number: int) -> None:
        self.queue = queue
        self.number = number
        self.sent = False
        self.problem: str | None = None  # what was wrong with a put(), if anything

    def put(self, result) -> None:
        """Send the result; refuse a second one, or one that cannot be pickled."""
        if self.sent:
            self.refuse("put a second result")
        try:
            # Pickled here, not in the queue's feeder thread, which would only
            # print a traceback and drop the result.
            pickled = pickle.dumps(result)
        except Exception as error:  # noqa: BLE001 (anything pickle raises)
            self.refuse(
                f"put a result that cannot be pickled ({type(error).__name__}: {error})"
            )
        self.send("result", pickled)
        self.sent = True

    def refuse(self, problem: str) -> None:
        """Remember the first thing wrong with a put(), and raise it in the lookup."""
        self.problem = self.problem or problem
        raise ValueError(problem)

    def send(self, kind: str, *details) -> None:
        """Put one message for the parent on the queue."""
        try:
            self.queue.put((self.number, kind, *details))
        except RuntimeError:
            # "can't start new thread", for the queue's feeder thread: a limit
            # on processes counts threads too, and this worker can tell nobody.
            os._exit(NO_THREAD)


def remote_traceback(error: BaseException) -> tuple[str, bytes | None]:
    """The worker's traceback as text, and the exception pickled (None if it cannot be)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        pickled = pickle.dumps(error)
    except Exception:  # noqa: BLE001 (the text is enough)
        pickled = None
    return text, pickled


IMPORTABLE = (
    "define it at the top level of a module the workers can import, "
    "not as a lambda, a nested function or under `if __name__ == '__main__':`"
)


def pack_lookup(lookup: Lookup, context) -> Lookup | bytes:
    """The lookup as the workers get it: itself under fork, pickled under spawn and forkserver.

    A spawned worker unpickles it in worker(), where a failure becomes one clear
    error, instead of in multiprocessing's start-up, which prints a traceback
    from every worker.
    """
    method = context.get_start_method()
    if method == "fork":  # the child is a copy of this process: nothing to send
        return lookup
    try:
        return pickle.dumps(lookup)
    except Exception as error:  # noqa: BLE001 (anything pickle raises)
        raise CannotStartError(
            f"the lookup {lookup!r} cannot be sent to {method} workers "
            f"({type(error).__name__}: {error}); {IMPORTABLE}"
        ) from None


def load_lookup(lookup: Lookup | bytes) -> Lookup:
    """The lookup from pack_lookup(), unpickled if it came as bytes."""
    return pickle.loads(lookup) if isinstance(lookup, bytes) else lookup


# The supervisor: the parent's side of a run, and the one place that waits.

GRACE = 0.5  # seconds a stopped worker gets to end before it is killed
LINGER = 1.0  # seconds a worker may take to exit once its result has arrived
START_LIMIT = 60.0  # seconds a worker may take to start its lookup


class WorkerState:
    """What the parent knows of one worker."""

    def __init__(self, person: Hashable, process) -> None:
        self.person = person
        self.process = process  # its multiprocessing Process
        self.started = math.nan  # when its process was started
        self.lookup_started = math.nan  # when the worker said that its lookup began
        self.has_result = False
        self.exited = False
        self.deadline = math.inf  # when `overdue` happens, unless something comes first
        self.overdue = ""  # "start", "timeout", "linger" or "kill"


class Supervisor:
    """Starts the workers, then waits for results, exits and deadlines in one loop.

    It waits on the queue's pipe and on every worker's sentinel together, as
    concurrent.futures.process does, with the nearest deadline as its timeout:
    a worker's start-up, a lookup's time limit, a worker lingering after its
    result. No wait of the run can outlast its bound. On any error, Ctrl-C and
    SIGTERM included, it stops every worker and all that its lookup started.
    """

    def __init__(self, context, timeout: float | None, arrivals: list[Arrival]):
        self.context = context
        self.timeout = timeout
        self.arrivals = arrivals
        self.workers: list[WorkerState] = []
        self.pipe = None  # the queue's read end, which read() reads
        self.unread = bytearray()  # bytes from the pipe, not yet a whole message

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is not None:
            self.stop()

    def make_queue(self):
        """The run's one Queue, made with the stop signals held (see signals_held())."""
        open_standard_fds()  # so that the queue's pipe cannot take their place
        try:
            with signals_held():
                output = self.context.Queue()
        except (ImportError, OSError) as error:  # no working /dev/shm, as on AWS Lambda
            raise CannotStartError(
                "multiprocessing's Queue needs POSIX semaphores, and they are not "
                f"available here ({error})"
            ) from None
        self.pipe = output._reader
        return output

    def add(self, person: Hashable, process) -> None:
        """Take charge of one worker's process, not started yet."""
        self.workers.append(WorkerState(person, process))

    def start_all(self) -> None:
        """Start every worker's process, each with the stop signals held.

        Every 50 ms or so it checks on the workers already running: starting
        many takes a while, and their results and deadlines cannot wait.
        """
        checked = time.monotonic()
        for worker in self.workers:
            worker.started = time.monotonic()
            try:
                with signals_held():
                    worker.process.start()
            except (OSError, EOFError) as error:
                raise CannotStartError(
                    f"could not start a process for {worker.person!r}: {why(error)}"
                ) from None
            worker.deadline, worker.overdue = worker.started + START_LIMIT, "start"
            if time.monotonic() - checked > 0.05:
                self.check_on_workers(timeout=0)
                checked = time.monotonic()

    def started(self) -> list[WorkerState]:
        """The workers whose process has been started."""
        return [worker for worker in self.workers if worker.process.pid is not None]

    def collect(self) -> None:
        """Wait until every result has arrived."""
        while not all(worker.has_result for worker in self.workers):
            self.check_on_workers(self.until_nearest_deadline())

    def join(self) -> None:
        """Wait until every worker has exited."""
        while not all(worker.exited for worker in self.workers):
            self.check_on_workers(self.until_nearest_deadline())

    def until_nearest_deadline(self) -> float | None:
        """Seconds until the nearest deadline, or None if there is none."""
        nearest = min(worker.deadline for worker in self.workers)
        return None if nearest == math.inf else max(0, nearest - time.monotonic())

    def check_on_workers(self, timeout: float | None) -> None:
        """The one wait of the run: up to `timeout` seconds for a message or an exit,
        then act on all that has happened: messages, exits, passed deadlines."""
        running = {w.process.sentinel: w for w in self.started() if not w.exited}
        ready = multiprocessing.connection.wait([self.pipe, *running], timeout)
        if self.pipe in ready:
            self.read()
        # A worker exits only once all it sent is in the pipe, and read() took
        # all the pipe held: whatever an exited worker sent has been read.
        for sentinel in ready:
            if sentinel in running:
                self.on_exit(running[sentinel])
        self.check_deadlines()

    def read(self) -> None:
        """Read all the pipe holds now, and act on each message that is now whole.

        The queue's get() reads a message whole, so it would wait forever for
        the rest of one whose worker was killed halfway through sending it.
        Reading only the bytes already in the pipe never waits. One read takes
        up to 1 MiB, more than a pipe holds (64 KiB by default on Linux).
        """
        # Held back meanwhile, so that a Ctrl-C cannot come between taking a
        # message out and acting on it: a result once read is never lost.
        with signals_held():
            self.unread += os.read(self.pipe.fileno(), 1 << 20)
            for message in self.whole_messages():
                self.on_message(*message)

    def whole_messages(self) -> Iterator[tuple]:
        """Take each whole message out of the bytes read so far.

        The framing is multiprocessing's own: a 4-byte big-endian size, then
        the pickled message (for one over 2 GiB: -1, then an 8-byte size).
        """
        while len(self.unread) >= 4:
            (size,) = struct.unpack_from("!i", self.unread)
            start = 4
            if size == -1:
                if len(self.unread) < 12:
                    return
                (size,) = struct.unpack_from("!Q", self.unread, 4)
                start = 12
            if len(self.unread) < start + size:
                return
            message = pickle.loads(self.unread[start : start + size])
            del self.unread[: start + size]
            yield message

    def on_message(self, number: int, kind: str, *details) -> None:
        """Act on one message from worker number `number`."""
        worker = self.workers[number]
        now = time.monotonic()
        if kind == "started":
            # time.monotonic() is one clock for every process on Linux and
            # macOS; a time from the worker outside its start and now is not.
            began = details[0]
            worker.lookup_started = began if worker.started <= began <= now else now
            limit = math.inf if self.timeout is None else self.timeout
            worker.deadline = worker.lookup_started + limit
            worker.overdue = "timeout"
        elif kind == "result":
            self.keep_result(worker, details[0], now)
            worker.deadline, worker.overdue = now + LINGER, "linger"
        elif kind == "failed":
            failure, text, pickled = details
            self.fail(worker, failure, cause=rebuild_cause(text, pickled))
        elif kind == "stdout":
            raise StdoutError(*details)
        elif kind == "unloadable":
            raise CannotStartError(
                f"{self.context.get_start_method()} workers cannot load the lookup "
                f"({details[0]}); {IMPORTABLE}"
            )

    def keep_result(self, worker: WorkerState, pickled: bytes, now: float) -> None:
        """Record one result as it arrives, in arrivals."""
        try:
            result = pickle.loads(pickled)
        except Exception as error:  # noqa: BLE001 (anything unpickling raises)
            self.fail(worker, f"put a result the parent cannot unpickle ({error})")
        worker.has_result = True
        self.arrivals.append(
            Arrival(worker.person, result, worker.started, worker.lookup_started, now)
        )

    def on_exit(self, worker: WorkerState) -> None:
        """A worker's process has ended: clear away what its lookup left, judge the exit."""
        # Whatever the lookup started must not outlive its worker. Killed before
        # the worker is reaped, while its process group's number is still its own.
        signal_group(worker.process.pid, signal.SIGKILL)
        worker.process.join(GRACE)
        worker.exited = True
        worker.deadline = math.inf
        code = worker.process.exitcode
        if worker.overdue == "kill":  # stopped for lingering after its result
            warnings.warn(
                f"the worker for {worker.person!r} had not exited {LINGER:g} s "
                "after sending its result, so it was stopped",
                RuntimeWarning,
                stacklevel=2,
            )
        elif code == NO_THREAD:
            raise CannotStartError(
                f"the worker for {worker.person!r} could not start a thread: "
                f"{PROCESS_LIMIT} is reached"
            )
        elif code is not None and code < 0:
            self.fail(worker, f"was killed by {signal_name(-code)}")
        elif code:
            self.fail(worker, f"exited with status {code}")
        elif not worker.has_result:
            self.fail(worker, "ended without sending its result")

    def check_deadlines(self) -> None:
        """Act on every deadline that has passed."""
        now = time.monotonic()
        for worker in self.workers:
            if now < worker.deadline:
                continue
            if worker.overdue == "start":
                self.fail(worker, f"did not start within {START_LIMIT:g} s")
            elif worker.overdue == "timeout":
                self.fail(worker, f"ran past the time limit of {self.timeout:g} s")
            elif worker.overdue == "linger":
                if worker.process.exitcode is not None:  # a forked child of its lookup
                    self.on_exit(worker)  # holds its sentinel, which hid its exit
                    continue
                signal_worker(worker.process, signal.SIGTERM)
                worker.deadline, worker.overdue = now + GRACE, "kill"
            else:  # "kill": it ignored SIGTERM
                signal_worker(worker.process, signal.SIGKILL)
                worker.deadline = math.inf

    def fail(self, worker: WorkerState, failure: str, cause=None) -> None:
        """End the run with a PetLookupError naming the worker's person."""
        error = PetLookupError(f"lookup for {worker.person!r} {failure}", worker.person)
        raise error from cause

    def stop(self) -> None:
        """Stop every worker still running, and all that its lookup started; reap them."""
        with signals_held():  # a second Ctrl-C must not cut the clean-up short
            running = [worker for worker in self.started() if not worker.exited]
            for worker in running:
                # One still starting up has nothing to clean up, and its start-up
                # holds SIGTERM back: it is killed at once.
                starting = math.isnan(worker.lookup_started)
                signal_worker(
                    worker.process, signal.SIGKILL if starting else signal.SIGTERM
                )
            # Most stop at once; the wait ends when the last one has, or at GRACE.
            waiting = {worker.process.sentinel for worker in running}
            deadline = time.monotonic() + GRACE
            while waiting and time.monotonic() < deadline:
                left = max(0, deadline - time.monotonic())
                waiting -= set(multiprocessing.connection.wait(waiting, left))
            for worker in running:  # any that ignore SIGTERM, and their children
                signal_worker(worker.process, signal.SIGKILL)
                worker.process.join(GRACE)
                worker.exited = True
            self.keep_results_left()

    def keep_results_left(self) -> None:
        """Keep the results already in the pipe: they arrived before the run ended."""
        if self.pipe is None:
            return
        deadline = time.monotonic() + GRACE
        # The run is ending with an error of its own: nothing here may replace it.
        with contextlib.suppress(Exception):
            while self.pipe.poll(0) and time.monotonic() < deadline:
                self.unread += os.read(self.pipe.fileno(), 1 << 20)
            now = time.monotonic()
            for number, kind, *details in self.whole_messages():
                if kind == "result":
                    self.keep_result(self.workers[number], details[0], now)


def rebuild_cause(text: str | None, pickled: bytes | None) -> BaseException | None:
    """The worker's exception, caused by its traceback text, as concurrent.futures does."""
    if text is None:
        return None
    cause: BaseException = RemoteTraceback(text)
    try:
        original = pickle.loads(pickled) if pickled else None
    except Exception:  # noqa: BLE001 (the traceback text is still there)
        original = None
    if isinstance(original, BaseException):
        original.__cause__ = cause
        cause = original
    return cause


def why(error: BaseException) -> str:
    """What a failed start() means, in words."""
    if isinstance(error, EOFError):
        return "the fork server ended unexpectedly (see its message above)"
    reasons = {
        errno.EAGAIN: f"{PROCESS_LIMIT} is reached",
        errno.EMFILE: "too many open files (ulimit -n)",
        errno.ENOMEM: "not enough memory",
        errno.ENOENT: "no writable temporary folder (set TMPDIR to one)",
    }
    reason = reasons.get(getattr(error, "errno", None))
    return f"{reason}: {error}" if reason else str(error)


# Signals. Three stop a run: Ctrl-C (SIGINT), which a terminal sends to its
# whole foreground process group; SIGHUP, when a terminal closes; SIGTERM, from
# kill, timeout, systemd or docker stop. main() turns the first into an orderly
# stop and one line. Each worker lives in a process group of its own, which the
# terminal's signals do not reach: the parent alone decides how workers stop.

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@contextlib.contextmanager
def signals_held(signals: list[int] = STOP_SIGNALS) -> Iterator[None]:
    """Hold the signals back until the block ends; a process started inside inherits the hold.

    So no signal can hit a worker, or multiprocessing's resource tracker or fork
    server, while it is still starting up (spawn takes a while) and make it
    print a traceback. A worker lets the signals in once it has set itself up;
    the two helpers keep SIGHUP held for good, so that a closing terminal does
    not kill them while the parent still needs them.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def become_worker() -> None:
    """Set up a worker: its own process group, default signals, an end with its parent."""
    # A process group of its own: one os.killpg() stops the worker and all that
    # its lookup started, and a terminal's Ctrl-C and SIGHUP reach the parent
    # alone, which then stops the run in order.
    os.setpgid(0, 0)
    # Default actions, which whatever the lookup starts inherits; a signal the
    # run was started with ignored (nohup, a background job) stays ignored.
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, signal.SIG_DFL)
    # The parent held the signals back while it started this process: let them in.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # No program the lookup runs may inherit multiprocessing's pipes: holding
    # the one behind this worker's sentinel, it would hide the worker's exit.
    # Spawn and forkserver hand them over inheritable; under fork they are not,
    # and a worker would spend a system call on each of the parent's files.
    if multiprocessing.get_start_method() != "fork":
        for name in os.listdir("/dev/fd"):
            with contextlib.suppress(OSError):  # the listing's own, now closed
                if int(name) > 2:
                    os.set_inheritable(int(name), False)
    # A parent killed by SIGKILL stops nobody, but its end closes the pipe behind
    # parent_process().sentinel: a thread waits for that, then ends this worker.
    sentinel = multiprocessing.parent_process().sentinel
    threading.Thread(target=end_with_parent, args=(sentinel,), daemon=True).start()


def end_with_parent(parent_sentinel: int) -> None:
    """Wait, as long as this worker lives, for the parent to end; then end the worker's group."""
    multiprocessing.connection.wait([parent_sentinel])
    os.killpg(os.getpid(), signal.SIGKILL)


def signal_worker(process, number: int) -> None:
    """Send a signal to a worker, and to its process group: all that its lookup started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(process.pid, number)  # in case it has not made its group yet
    signal_group(process.pid, number)


def signal_group(group: int, number: int) -> None:
    """Send a signal to a process group, if there is still anyone in it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


def signal_name(number: int) -> str:
    """A signal's name: SIGKILL for 9, SIGRTMIN+6 for a real-time one."""
    try:
        return signal.Signals(number).name
    except ValueError:
        first, last = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1)
        return (
            f"SIGRTMIN+{number - first}"
            if first < number < last
            else f"signal {number}"
        )


class Stopped(BaseException):
    """The first Ctrl-C, SIGTERM or SIGHUP while main() runs the lookups."""

    def __init__(self, number: int) -> None:
        super().__init__(number)
        self.number = number


@contextlib.contextmanager
def stop_signals_handled() -> Iterator[None]:
    """In the block, the first stop signal raises Stopped, and any later one is ignored.

    A signal that the program was started with ignored (nohup, a background
    job's Ctrl-C) stays ignored. At the end, the handlers and the signal mask
    that were there before are put back. Only the main thread may set
    handlers: in any other, the block changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

    def stop(number: int, frame) -> None:
        for each in STOP_SIGNALS:  # one line, however many signals follow
            signal.signal(each, signal.SIG_IGN)
        raise Stopped(number)

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        for number, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(number, stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


# Checks, done before anything starts.

MAX_SECONDS = 86400.0  # the longest delay or time limit accepted: a day
SHAPE = {"pet_name": "max"}  # what each person's entry in the pet map looks like
PETS = Path(__file__).with_name("pets.py")  # the post's data, beside this file


def load_pet_maps(path: Path = PETS):
    """pet_maps from pets.py, or a PetMapError that says what is wrong with the file.

    The file is loaded by its path, beside mp.py, rather than imported: python3
    -I and -P leave the script's folder off the import path.
    """
    spec = importlib.util.spec_from_file_location("pets", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise PetMapError(
            f"line {error.lineno}: {type(error).__name__}: {error.msg}"
        ) from None
    except OSError as error:
        raise PetMapError(f"cannot read it: {error.strerror or error}") from None
    except Exception as error:  # noqa: BLE001 (whatever pets.py raised)
        lines = [
            f.lineno
            for f in traceback.extract_tb(error.__traceback__)
            if f.filename == str(path)
        ]
        where = f"line {lines[-1]}: " if lines else ""
        raise PetMapError(f"{where}{type(error).__name__}: {error}") from None
    if not hasattr(module, "pet_maps"):
        raise PetMapError("it defines no pet_maps")
    return module.pet_maps


def check_input(pet_map: Mapping, delay: float, timeout: float | None) -> dict:
    """{person: pet name} from the pet map, once the map, delay and timeout are checked."""
    seconds(delay, "delay")
    if timeout is not None:
        seconds(timeout, "timeout")
    if not isinstance(pet_map, Mapping):
        raise PetMapError(f"pet map must be a mapping, not {type(pet_map).__name__}")
    pet_names = {}
    for person, entry in pet_map.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):
            raise PetMapError(f"{person!r} needs an entry like {SHAPE}, got {entry!r}")
        pet_names[person] = entry["pet_name"]
    check_open_files(len(pet_names))
    check_processes(len(pet_names))
    return pet_names


def seconds(value: str | float, what: str = "seconds") -> float:
    """A number of seconds from 0 to MAX_SECONDS, or a ValueError naming `what`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0 <= number <= MAX_SECONDS:  # nan fails this too
        raise ValueError(
            f"{what} must be a number of seconds from 0 to {MAX_SECONDS:g}, "
            f"not {value!r}".lstrip()
        )
    return number


def check_open_files(people: int) -> None:
    """Refuse, before anything starts, more workers than the open-files limit allows."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    needed = 2 * people + len(os.listdir("/dev/fd")) + 6  # 2 pipe ends per worker
    if limit != resource.RLIM_INFINITY and needed > limit:
        raise CannotStartError(
            f"{people} workers, one per person, need about {needed} open files, "
            f"but the limit is {limit} (ulimit -n)"
        )


def check_processes(people: int) -> None:
    """Refuse, before anything starts, more workers than the limit on processes allows.

    Both limits (ulimit -u, and a container's pids limit) count threads as
    processes: each worker is a process with two threads, the queue's feeder
    and the one that watches the parent. Checked on Linux only, from /proc.
    """
    needed = 3 * people + 2  # and multiprocessing's resource tracker and fork server
    left = [(n, limit) for n, limit in processes_left() if needed > n]
    if people and left:
        n, limit = min(left)
        raise CannotStartError(
            f"{people} workers, one per person, need about {needed} more processes "
            f"and threads, but {limit} leaves room for {max(n, 0)}"
        )


def processes_left() -> Iterator[tuple[int, str]]:
    """For each limit on processes: how many more may start, and the limit in words."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if limit != resource.RLIM_INFINITY and os.getuid() != 0 and Path("/proc").is_dir():
        yield limit - tasks_of(os.getuid()), f"ulimit -u {limit}"
    with contextlib.suppress(OSError):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        for line in lines:  # cgroup v1: "N:pids:/path"; v2: "0::/path"
            _, controllers, path = line.split(":", 2)
            if "pids" in controllers.split(","):
                folder = Path("/sys/fs/cgroup/pids" + path)
            elif not controllers:
                folder = Path("/sys/fs/cgroup" + path)
            else:
                continue
            with contextlib.suppress(OSError, ValueError):
                most = (folder / "pids.max").read_text().strip()
                now = int((folder / "pids.current").read_text())
                if most != "max":
                    yield int(most) - now, f"the pids limit of {most} on this container"


def tasks_of(uid: int) -> int:
    """How many processes and threads the user `uid` runs (Linux)."""
    count = 0
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def open_standard_fds() -> None:
    """Open /dev/null on stdin, stdout or stderr if one is closed (as by <&- or >&-).

    Otherwise the queue's pipe takes that number: spawned workers would then
    write their lines into the pipe, or close it as their stdin.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)  # takes the lowest free number: fd


def usable_cores() -> int:
    """How many cores this process may run on."""
    cores_allowed = getattr(os, "sched_getaffinity", None)  # not on macOS
    return len(cores_allowed(0)) if cores_allowed else os.cpu_count() or 1


# Printing.

PROG = Path(__file__).name  # "mp.py", as the command line's messages begin


def print_line(text: str) -> None:
    """Print a line in one write, flushed at once; raise StdoutError if stdout fails.

    print() writes the text and the newline separately, and with
    PYTHONUNBUFFERED=1 each goes out on its own: ten workers sharing one stdout
    could run their lines together. SIGTTOU is held for the write because a
    worker's process group is not the terminal's foreground one, and under
    `stty tostop` the terminal would stop it.
    """
    if sys.stdout is None:  # started with stdout closed: as print() does, nothing
        return
    try:
        with signals_held([signal.SIGTTOU]):
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
    except (OSError, ValueError) as error:  # ValueError: stdout closed in Python
        raise StdoutError(
            getattr(error, "errno", None) or errno.EBADF,
            getattr(error, "strerror", None) or "stdout is closed",
        ) from error


def silence_stdout() -> None:
    """Send what is left for stdout to /dev/null, as the Python docs' note on SIGPIPE does."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)


def say(message: str) -> None:
    """One line on stderr, if there is a stderr to write to."""
    if sys.stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def draw_timeline(
    arrivals: list[Arrival], delay: float, best: int, encoding: str = "utf-8"
) -> str:
    """A row per result on a common axis in seconds, then the speedup.

    A row starts when the parent started that worker's process: "-" while the
    worker starts up, "=" while its lookup runs, up to its result's arrival.
    """
    if not arrivals:
        return "no results, so nothing to draw"
    origin = min(arrival.process_started for arrival in arrivals)
    wall = max(arrival.arrived for arrival in arrivals) - origin
    scale = 54 / max(wall, 1e-3)  # columns a second: names take 20, the run 55
    lines = [f"{'seconds':<20}0{f'{wall / 2:.2f}':^53}{wall:.2f}"]  # 0, middle, end
    for arrival in sorted(arrivals, key=lambda arrival: arrival.process_started):
        started, began, arrived = (
            round((moment - origin) * scale)
            for moment in (
                arrival.process_started,
                arrival.lookup_started,
                arrival.arrived,
            )
        )
        bar = " " * started + "-" * (began - started) + "=" * (arrived - began + 1)
        # The name as stdout prints it (\xe9 on an ASCII one), so the bars line up.
        name = str(arrival.person).encode(encoding, "backslashreplace").decode(encoding)
        lines.append(f"{name[:18]:<20}{bar}")
    work = len(arrivals) * delay
    lines.append(
        f"{len(arrivals)} lookup{'' if len(arrivals) == 1 else 's'} of {round(delay, 3)} s = {round(work, 3)} s of work "
        f"in {wall:.2f} s: {work / max(wall, 1e-9):.1f}x speedup (at most {best}x here)"
    )
    lines.append(
        "- a worker starting up, = its lookup running, until its result arrived"
    )
    return "\n".join(lines)


# The command line.

DESCRIPTION = (
    "Look up ten pet names at once: one process per person, one Queue for the "
    "results. The 2019 post 'Parallel Processing with Python and Multiprocessing "
    "using Queue', made safe to copy."
)


def main(argv: list[str] | None = None) -> int:
    """The command line: run the post's lookups and print its lines; return the exit status."""
    args = parse_arguments(argv)
    if sys.stdout is None:
        say("error: stdout is closed (as by >&-), so the results have nowhere to go")
        return 1
    # A name outside ASCII, on an ASCII-only stdout, is printed as \xe9 and the like.
    with contextlib.suppress(AttributeError):  # a stand-in stdout may lack it
        sys.stdout.reconfigure(errors="backslashreplace")
    arrivals: list[Arrival] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status, problem = run_lookups(args, arrivals)
            print_results(args, arrivals, complete=status == 0)
        except StdoutError as error:  # a worker's or the parent's own
            if error.errno == errno.EPIPE:
                # The reader left early (`python3 mp.py | head -1`): end quietly,
                # as the Python docs' note on SIGPIPE advises.
                silence_stdout()
                return 1
            status, problem = 1, f"error: cannot write to stdout: {error.strerror}"
    for warning in caught:
        say(f"warning: {warning.message}")
    if problem:
        say(problem)
    return status


def run_lookups(args: argparse.Namespace, arrivals: list[Arrival]) -> tuple[int, str]:
    """find_pet_names() for the command line: the exit status, and what went wrong."""
    lookup = compute_pet_name if args.work == "cpu" else get_pet_name
    try:
        with stop_signals_handled():
            pet_map = load_pet_maps(PETS)
            find_pet_names(
                pet_map, args.delay, args.start_method, lookup, args.timeout, arrivals
            )
    except PetMapError as error:
        return 1, f"error in pets.py: {error}"
    except (PetLookupError, CannotStartError) as error:
        return 1, f"error: {error}"
    except Stopped as stop:  # as a shell reports a signal: 128 + its number
        if stop.number == signal.SIGINT:
            return 128 + stop.number, "interrupted"
        return 128 + stop.number, f"stopped by {signal_name(stop.number)}"
    except KeyboardInterrupt:  # from another thread, whose Ctrl-C is Python's own
        return 128 + signal.SIGINT, "interrupted"
    return 0, ""


def print_results(args: argparse.Namespace, arrivals: list[Arrival], complete: bool):
    """The post's last two lines, even for a run that failed, then the timeline."""
    results = [arrival.result for arrival in arrivals]
    try:
        if results or complete:
            print("consuming from queue:")
            print(results)
        if complete and args.timeline:
            best = len(arrivals) if args.work == "sleep" else usable_cores()
            encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
            best = min(best, len(arrivals))
            print(draw_timeline(arrivals, args.delay, best, encoding))
        sys.stdout.flush()  # so that a stdout closed or full shows up here, not at exit
    except OSError as error:
        raise StdoutError(error.errno, error.strerror) from error


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The options, with plain-sentence help."""
    methods = multiprocessing.get_all_start_methods()  # the first is the default here
    default_method = multiprocessing.get_start_method(allow_none=True) or methods[0]
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument(
        "--delay",
        type=seconds_option,
        default=DELAY,
        metavar="SECONDS",
        help=f"how long each lookup takes, in seconds (default: {DELAY:g})",
    )
    parser.add_argument(
        "--work",
        choices=["sleep", "cpu"],
        default="sleep",
        help="sleep: each lookup waits, as in the post (the default); "
        "cpu: each lookup computes for that long instead",
    )
    parser.add_argument(
        "--start-method",
        choices=methods,
        help="how to start the worker processes (default: this Python's default "
        f"here, which is {default_method})",
    )
    parser.add_argument(
        "--timeout",
        type=seconds_option,
        metavar="SECONDS",
        help="end the run if a lookup takes longer than this, counted from when "
        "the lookup starts (default: no limit, as in the post)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="after the results, draw when each worker started, when its lookup "
        "ran and when its result arrived",
    )
    return parser.parse_args(argv)


def seconds_option(text: str) -> float:
    """--delay's and --timeout's type: seconds(), with its message shown by argparse."""
    try:
        return seconds(text, "")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# Under spawn and forkserver every worker imports this file: the guard keeps
# each of them from starting workers of its own.
if __name__ == "__main__":
    # Held back but while main() runs the lookups: a second Ctrl-C or SIGTERM,
    # just after the first, must not cut short the exit that the first began.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    sys.exit(main())
