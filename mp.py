"""Look up ten people's pet names at once: one process per person, one Queue.

The 2019 post "Parallel Processing with Python and Multiprocessing using Queue",
made safe to copy: ten lookups of 2 s each take about 2 s together, not 20.

    worker processes, one per person                     the parent process
    get_pet_name(): output.put() -> feeder thread --+
    get_pet_name(): output.put() -> feeder thread --+--> one pipe --> output.get(),
    ...                                             |    (~64 KB)     then join()
"""

import argparse
import contextlib
import math
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Mapping

from pets import pet_maps

DELAY = 2.0  # seconds each lookup takes, standing in for slow work
# Ctrl-C, kill's default signal, and (POSIX only) a closing terminal
STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM]
if hasattr(signal, "SIGHUP"):
    STOP_SIGNALS.append(signal.SIGHUP)


def get_pet_name(data: tuple, output: multiprocessing.Queue, delay=DELAY) -> None:
    """The post's lookup: wait, say so, and put (person, "pet name: ...")."""
    person, pet_name = data
    time.sleep(delay)
    print_line("adding to queue")
    output.put((person, f"pet name: {pet_name}"))


def find_pet_names(
    pet_maps: Mapping, delay=DELAY, start_method=None, lookup=get_pet_name, timeout=None
) -> dict:
    """Look up every pet name, one process per person: {person: result}.

    lookup(data, output, delay) puts (person, result). PetLookupError names
    the person whose entry has no "pet_name" string (before anything starts),
    whose lookup ended without its result, or ran past `timeout` seconds.
    No worker is left running. Call it from the main thread: it sets signals.
    """
    check_input(pet_maps, delay)
    context = multiprocessing.get_context(start_method)
    processes, results = {}, {}
    try:
        with stop_signals_held():
            # Made here, not on import: spawn and forkserver workers import mp.py.
            output = context.Queue()
            for person, entry in pet_maps.items():
                args = (lookup, (person, entry["pet_name"]), output, delay)
                processes[person] = context.Process(target=worker, args=args)
            for process in processes.values():
                process.start()
        started = time.monotonic()
        # Read every result before joining: a worker cannot end while what it
        # put waits for room in the pipe.
        while len(results) < len(processes):
            with contextlib.suppress(queue.Empty):  # bounded: see who has ended
                person, result = output.get(timeout=0.1)
                results[person] = result
            overdue = timeout is not None and time.monotonic() - started > timeout
            for person, process in processes.items():
                if person in results:
                    continue
                # Ended, with nothing left to read: its result is not coming.
                ended = not process.is_alive() and output.empty()
                if ended or overdue:
                    why = f"exit code {process.exitcode}" if ended else "timed out"
                    raise PetLookupError(f"no result for {person!r} ({why})")
        for process in processes.values():
            process.join()
    finally:
        stop(processes.values())
    return results


class PetLookupError(Exception):
    """A pet name could not be looked up; the message names the person."""


def compute_pet_name(data: tuple, output: multiprocessing.Queue, delay=DELAY) -> None:
    """get_pet_name(), computing for `delay` seconds of CPU time (--work cpu)."""
    done_at = time.process_time() + delay  # CPU time: a busy machine takes longer
    while time.process_time() < done_at:
        sum(number * number for number in range(10_000))
    get_pet_name(data, output, delay=0)


def worker(lookup, data: tuple, output: multiprocessing.Queue, delay: float) -> None:
    """What each worker process runs: the lookup, ending at once on terminate()."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler fork copied
    lookup(data, output, delay)


@contextlib.contextmanager
def stop_signals_held():
    """Hold the stop signals while multiprocessing starts its processes.

    They inherit an ignored Ctrl-C and SIGHUP, so none dies of one with a
    traceback: the parent stops them all. A SIGTERM waits until the workers
    have started; a Ctrl-C or SIGHUP in that moment is lost.
    """
    handlers = {
        number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS
    }
    waiting = []
    signal.signal(signal.SIGTERM, lambda number, frame: waiting.append(number))
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        if waiting:
            signal.raise_signal(signal.SIGTERM)


def print_line(text: str) -> bool:
    """Print text and a newline in one write; False if the reader has gone."""
    try:
        # print() writes "\n" apart: unbuffered, ten workers' lines would run together
        sys.stdout.write(text + "\n")
        sys.stdout.flush()  # here, so that a reader who has gone is noticed here
        return True
    except BrokenPipeError:  # `| head -3`: go quiet, as the Python docs show;
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # at exit too
        return False


def check_input(pet_maps: Mapping, delay: float) -> None:
    """Refuse bad input before any process starts, naming what is wrong."""
    seconds(delay)
    for person, entry in pet_maps.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):
            message = f"pet_maps[{person!r}] has no 'pet_name' string: {entry!r}"
            raise PetLookupError(message)


def seconds(value) -> float:
    """A delay or a time limit: a number of seconds, 0 or more."""
    if not 0 <= float(value) < math.inf:
        raise ValueError(f"not a number of seconds, 0 or more: {value!r}")
    return float(value)


def stop(processes) -> None:
    """End each worker still running: terminate(), then kill() after a second."""
    running = [process for process in processes if process.is_alive()]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + 1
    for process in running:
        process.join(max(deadline - time.monotonic(), 0))
        if process.is_alive():  # it ignores SIGTERM
            process.kill()
            process.join()


def stop_run(number: int, frame) -> None:
    """End the run on a stop signal: one line, and status 128 + its number."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)  # so the clean-up can finish
    print(f"mp.py: stopped by {signal.Signals(number).name}", file=sys.stderr)
    raise SystemExit(128 + number)  # find_pet_names() stops the workers


def main(argv: list[str] | None = None) -> int:
    """The command line: the post's run and lines; returns the exit status."""
    parser = argparse.ArgumentParser("mp.py", description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=seconds, default=DELAY, help="default: 2")
    methods = multiprocessing.get_all_start_methods()
    parser.add_argument("--start-method", choices=methods, help="default: Python's")
    parser.add_argument("--work", choices=["sleep", "cpu"], default="sleep")
    parser.add_argument("--timeout", type=seconds, help="default: none")
    args = parser.parse_args(argv)
    lookup = compute_pet_name if args.work == "cpu" else get_pet_name
    for number in STOP_SIGNALS:
        # SIGTERM and SIGHUP stop the run as Ctrl-C does; `nohup` still works.
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, stop_run)
    try:
        results = find_pet_names(
            pet_maps, args.delay, args.start_method, lookup, args.timeout
        )
    except PetLookupError as error:
        parser.exit(1, f"mp.py: error: {error}\n")
    if print_line("consuming from queue:") and print_line(str(list(results.values()))):
        return 0
    return 1  # the reader has gone: 1, as in the Python docs' note on SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
