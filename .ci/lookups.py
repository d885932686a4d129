"""Lookups that misbehave on purpose, and the baselines the timed tests compare with.

They live outside test_mp.py because spawn and forkserver workers import the
module a lookup comes from: from test_mp.py, each would import pytest too.
Each lookup takes mp.py's arguments, lookup(data, output, delay), with data
= (person, pet name), and acts on the pet name it is given, so that one
person's lookup misbehaves while the others run as usual.

    python3 .ci/lookups.py stamped METHOD DELAY      the ten lookups' times, as JSON
    python3 .ci/lookups.py sleep|cpu METHOD DELAY    ten plain processes, no queue;
                                                     prints the seconds they took
    python3 .ci/lookups.py timed COMMAND...          COMMAND, timed from start to end
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mp  # the kit, one folder up
from pets import pet_maps


def stamped(data, output, delay):
    """The post's wait, answering when it began and ended, and how its process started."""
    began = time.time()
    time.sleep(delay)
    output.put((data[0], (began, time.time(), multiprocessing.get_start_method())))


def signals(data, output, delay):
    """Answer whether Ctrl-C is ignored here and SIGTERM has its default action."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    output.put((data[0], (ignored, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)))


def big(data, output, delay):
    """Answer with a megabyte: ten of them are 160 times what the pipe holds."""
    output.put((data[0], (data[1] * 1_000_000)[:1_000_000]))


def failing(data, output, delay):
    """The real lookup, unless the pet name says how to fail.

    "raise", "exit" (status 3), "exit0" (status 0 with nothing sent), "kill"
    (SIGKILL) and "return" (return the answer instead of putting it) fail at
    once; "hang" sleeps a minute; "stubborn" does too, ignoring SIGTERM; a
    path hangs until SIGTERM comes, then creates that file; "flood" puts one
    answer after another for `delay` seconds.
    """
    person, how = data
    if how.startswith("/"):
        signal.signal(signal.SIGTERM, lambda *_: (Path(how).touch(), os._exit(0)))
    if how == "raise":
        raise LookupError(f"no record of {person}")
    if how in ("exit", "exit0"):
        os._exit(3 if how == "exit" else 0)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "return":
        return (person, "pet name: never put")
    if how == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    until = time.monotonic() + delay
    while how == "flood" and time.monotonic() < until:
        output.put(data)
    if how in ("hang", "stubborn") or how.startswith("/"):
        time.sleep(60)
    mp.get_pet_name(data, output, delay)


def burn(seconds):
    """Compute for `seconds` of CPU time, as mp.compute_pet_name() does."""
    done_at = time.process_time() + seconds
    while time.process_time() < done_at:
        sum(number * number for number in range(10_000))


def main(how, method, delay):
    """Run one of the command lines in the docstring above."""
    context = multiprocessing.get_context(None if method == "default" else method)
    if how == "stamped":
        stamps = mp.find_pet_names(pet_maps, delay, context.get_start_method(), stamped)
        print(json.dumps(stamps))
        return
    target = time.sleep if how == "sleep" else burn
    processes = [context.Process(target=target, args=(delay,)) for _ in pet_maps]
    started = time.monotonic()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    print(time.monotonic() - started)  # the seconds the ten took, start-up apart


if __name__ == "__main__":
    if sys.argv[1] == "timed":  # timed COMMAND...: its status, and its seconds
        started = time.monotonic()  # on the last line of stderr
        status = subprocess.call(sys.argv[2:])
        print(time.monotonic() - started, file=sys.stderr)
        sys.exit(status)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
