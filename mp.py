"""The 2019 post "Parallel Processing with Python and Multiprocessing using Queue", made
safe to copy: ten 2 s pet-name lookups at once, a process each, in about 2 s, not 20."""

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
import time

from pets import pet_maps

DELAY = 2.0  # seconds each lookup takes, standing in for slow work
# Ctrl-C, kill's default signal, and a closing terminal (SIGHUP: POSIX only)
STOP_SIGNALS = [s for s in signal.Signals if s.name in ("SIGINT", "SIGTERM", "SIGHUP")]


def get_pet_name(data, output, delay=DELAY):
    """The post's lookup: wait, say so, and put (person, "pet name: ...")."""
    person, pet_name = data
    time.sleep(delay)
    print_line("adding to queue")
    output.put((person, f"pet name: {pet_name}"))


def compute_pet_name(data, output, delay=DELAY):
    """--work cpu: get_pet_name(), computing for `delay` s in place of the wait."""
    done_at = time.process_time() + delay  # CPU time: a busy machine takes longer
    while time.process_time() < done_at:
        sum(number * number for number in range(10_000))  # a stand-in for real work
    get_pet_name(data, output, delay=0)


def find_pet_names(
    pet_maps, delay=DELAY, lookup=get_pet_name, timeout=None, on_failure=None
):
    """Look up every pet name, one process per person: {person: result}.

    lookup(data, output, delay) puts (person, result), data being (person, pet name).
    on_failure(person, exception) is called as each lookup raises, ends with no
    result, or passes `timeout` s; PetLookupError then holds failures and results."""
    output = mp.Queue()  # made here, not on import: spawn workers import this module
    processes = {}
    for person, entry in pet_maps.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("pet_name"), str):
            raise TypeError(f"pet_maps[{person!r}] has no 'pet_name' string: {entry!r}")
        args = (lookup, (person, entry["pet_name"]), output, delay)
        processes[person] = mp.Process(target=worker, args=args)
    results, failures, waiting = {}, {}, dict(processes)
    try:
        for process in processes.values():
            process.start()
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while waiting:  # get before join: a worker can't end until its result is read
            answers = []
            with contextlib.suppress(queue.Empty):  # a time limit: the checks below run
                answers.append(output.get(timeout=0.1))
            for person, process in waiting.items():
                if not process.is_alive() and output.empty():
                    code = process.exitcode  # ended, nothing left to read: no result
                    answers.append((person, ChildProcessError(f"exit code {code}")))
                elif time.monotonic() >= deadline:
                    answers.append((person, TimeoutError(f"after {timeout:g} s")))
            for person, answer in answers:
                if waiting.pop(person, None) is None:  # only its first word counts
                    continue
                if isinstance(answer, Exception):
                    failures[person] = answer
                    if on_failure is not None:
                        on_failure(person, answer)
                else:
                    results[person] = answer
    finally:
        stop(processes.values())  # the post's join(), ending any still running
    if failures:
        raise PetLookupError(failures, results)
    return results


class PetLookupError(Exception):
    """Lookups failed: .failures is {person: exception}, .results the others."""

    def __init__(self, failures, results):
        super().__init__(f"no pet name for {', '.join(map(str, failures))}")
        self.failures, self.results = failures, results


def worker(lookup, data, output, delay):
    """Each worker process: the lookup, its exception sent back, not printed."""
    for number in STOP_SIGNALS:  # Ctrl-C and a hang-up are the parent's to act on,
        signal.signal(number, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and terminate() ends a worker
    try:
        lookup(data, output, delay)
    except Exception as error:  # noqa: BLE001  (to the parent, as ProcessPoolExecutor)
        try:  # pickled here: the queue's thread would drop one that does not pickle
            output.put((data[0], pickle.loads(pickle.dumps(error))))
        except Exception:  # noqa: BLE001
            output.put((data[0], RuntimeError(repr(error))))


def stop(processes):
    """Join every worker: terminate() those still running, kill() a second on."""
    started = [process for process in processes if process.pid is not None]
    try:
        for process in started:
            process.terminate()
        deadline = time.monotonic() + 1  # one second for them all, not one each
        for process in started:
            process.join(max(deadline - time.monotonic(), 0))
    finally:  # also when a second Ctrl-C cuts the wait short
        for process in started:
            process.kill()
            process.join()


def print_line(text, file=None):
    """Print text and its newline in one write; quietly, if the reader has gone."""
    try:  # print() writes "\n" apart: unbuffered, workers' lines would run together
        print(text + "\n", end="", file=file, flush=True)
    except BrokenPipeError:  # `| head -3`: go quiet, as the Python docs show
        os.dup2(os.open(os.devnull, os.O_WRONLY), (file or sys.stdout).fileno())


def main(argv=None):
    parser = argparse.ArgumentParser("mp.py", description=__doc__)
    parser.add_argument("--delay", type=float, default=DELAY, help="seconds, default 2")
    parser.add_argument("--timeout", type=float, help="seconds in all, default none")
    parser.add_argument("--start-method", choices=mp.get_all_start_methods())
    parser.add_argument("--work", choices=["sleep", "cpu"], default="sleep")
    args = parser.parse_args(argv)
    if not 0 <= args.delay < math.inf or not 0 <= (args.timeout or 0) < math.inf:
        parser.error("--delay and --timeout take a number of seconds, 0 or more")
    mp.set_start_method(args.start_method, force=True)  # None: Python's default
    lookup = compute_pet_name if args.work == "cpu" else get_pet_name
    parent = os.getpid()

    def stop_run(number, frame):
        if os.getpid() == parent:  # not a worker, which fork gave this handler too
            name = signal.Signals(number).name
            os.write(2, f"mp.py: stopped by {name}\n".encode())  # print() may not
            if name == "SIGHUP":  # the terminal is gone, multiprocessing's helpers too
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            raise SystemExit(128 + number)  # find_pet_names() stops the workers

    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:  # kept, as `nohup` asks
            signal.signal(number, stop_run)

    def warn(person, error):
        print_line(f"mp.py: {person}: {type(error).__name__}: {error}", sys.stderr)

    try:
        results = find_pet_names(pet_maps, args.delay, lookup, args.timeout, warn)
        status = 0
    except TypeError as error:  # a malformed entry in pets.py
        parser.exit(1, f"mp.py: error: {error}\n")
    except PetLookupError as error:
        results, status = error.results, 1
    print_line("consuming from queue:")  # the post's last lines
    print_line(str(list(results.values())))
    return status


if __name__ == "__main__":
    sys.exit(main())
