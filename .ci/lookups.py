"""Lookups that misbehave on purpose, for test_mp.py.

They live in a module of their own, which imports nothing heavy, because
spawn and forkserver workers import the module a lookup comes from: from
test_mp.py, each worker would import pytest too. Each takes the lookup's
arguments, lookup(pet_name, output, delay), and most act on pet names that
the tests choose, so that one person's lookup misbehaves and the others' run
as usual.
"""

import multiprocessing
import os
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import mp


def start_method(pet_name, output, delay):
    """Answer with the start method that made this process, from its command line."""
    command = Path("/proc/self/cmdline").read_bytes()
    found = [
        m for m in ("forkserver", "spawn") if f"multiprocessing.{m}".encode() in command
    ]
    output.put(found[0] if found else "fork")


def in_reverse(pet_name, output, delay):
    """The real lookup, but each pet name says how long its lookup waits: "max:0.4"."""
    name, wait = pet_name.split(":")
    mp.get_pet_name(name, output, float(wait))


def failing(pet_name, output, delay):
    """The real lookup, except for "fail:HOW:FILE": write the time to FILE, then fail.

    HOW is "raise", "exit" (status 3), "exit0" (status 0, nothing sent), "kill"
    (SIGKILL) or "rt" (real-time signal SIGRTMIN+6).
    """
    if not pet_name.startswith("fail:"):
        return mp.get_pet_name(pet_name, output, delay)
    _, how, stamp = pet_name.split(":", 2)
    Path(stamp).write_text(repr(time.monotonic()))
    if how == "raise":
        raise LookupError("no record of sylvester")
    if how in ("exit", "exit0"):
        os._exit(3 if how == "exit" else 0)
    os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGRTMIN + 6)
    time.sleep(60)


def misbehaving(pet_name, output, delay):
    """Puts, or fails to put, in the way the pet name says."""
    if pet_name == "bare":  # the post's own put: just the string
        output.put("pet name: bare")
    elif pet_name == "twice":
        output.put("pet name: once")
        output.put("pet name: twice")
    elif pet_name == "unpicklable":
        output.put(threading.Lock())
    elif pet_name == "caught":  # catches the error its put() raised, and returns
        output.put("pet name: first")
        try:
            output.put("pet name: second")
        except ValueError:
            pass
    elif pet_name == "returns":
        return "pet name: returned"
    elif pet_name == "unimportable":  # the parent cannot unpickle it
        output.put(Unimportable())
    elif pet_name == "raises-deep":
        deep_failure(3)
    return None


class Unimportable:
    """Pickles in the worker, then cannot be rebuilt in the parent, like a result
    whose class the parent cannot import."""

    def __reduce__(self):
        return (cannot_rebuild, ())


def cannot_rebuild():
    """What unpickling an Unimportable calls: it fails."""
    raise ImportError("no module named 'elsewhere'")


def deep_failure(depth: int) -> None:
    """Raise from a few calls down, so the traceback shows where."""
    if depth:
        deep_failure(depth - 1)
    raise KeyError("the record is gone")


def half_a_message(pet_name, output, delay):
    """Die halfway through sending a 20 MB result, as when the OOM killer strikes.

    The worker writes into the queue's pipe what its feeder thread would have
    written of it by then, the 4-byte size and the first megabyte, then
    SIGKILLs itself. The rest of the message never comes.
    """
    size = 20_000_000
    os.write(output.queue._writer.fileno(), struct.pack("!i", size) + b"x" * 2**20)
    os.kill(os.getpid(), signal.SIGKILL)


def one_slow(pet_name, output, delay):
    """Answer at once, except for sylvester, whose lookup takes a minute."""
    if pet_name == "sylvester":
        time.sleep(60)
    output.put(f"pet name: {pet_name}")


def big(pet_name, output, delay):
    """A result of about a megabyte: the pet name a million times over."""
    output.put(f"pet name: {pet_name * 2**20}")


def lingering(pet_name, output, delay):
    """Put the result, then keep the process alive with a thread that is not a daemon."""
    output.put(f"pet name: {pet_name}")
    if pet_name == "lingers":
        threading.Thread(target=time.sleep, args=(60,)).start()


def staggered(pet_name, output, delay):
    """The pet name is "petN": wait N * 20 ms; "stuck:FILE" writes the time to FILE, then hangs."""
    if pet_name.startswith("stuck:"):
        Path(pet_name[6:]).write_text(repr(time.monotonic()))
        time.sleep(60)
    time.sleep(int(pet_name[3:]) * 0.02)
    output.put(pet_name)


def stuck(pet_name, output, delay):
    """For "stuck:FILE": ignore SIGTERM, write the time to FILE, and never end.

    "stuck-ctrl-c:FILE" also presses Ctrl-C (SIGINT to the parent) once stuck,
    and again when the parent's SIGTERM shows that it is cleaning up. Any other
    pet name, "NAME:FILE", fails once FILE exists, so that a lookup's failure
    can stop a run in which another worker ignores SIGTERM.
    """
    how, stamp = pet_name.split(":", 1)
    if not how.startswith("stuck"):
        while not Path(stamp).exists():
            time.sleep(0.01)  # polling for a state, not waiting out a race
        raise LookupError("failed once the other was stuck")
    parent = multiprocessing.parent_process().pid
    if how == "stuck-ctrl-c":
        signal.signal(signal.SIGTERM, lambda *_: os.kill(parent, signal.SIGINT))
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(stamp).write_text(repr(time.monotonic()))
    if how == "stuck-ctrl-c":
        os.kill(parent, signal.SIGINT)
    time.sleep(60)


def with_children(pet_name, output, delay):
    """Leave children behind: a `sleep` (from subprocess), and a forked copy of this
    process that runs on in Python, holding every file it had; then put the result.

    The pet name is "SECONDS:FILE": the sleep's argument, which a test can look
    for, and where to write the forked copy's pid. With a delay, the lookup
    waits that long before it puts its result.
    """
    seconds, pids = pet_name.split(":", 1)
    subprocess.Popen(["sleep", seconds])
    forked = os.fork()
    if forked == 0:
        time.sleep(float(seconds))
        os._exit(0)
    Path(pids).write_text(str(forked))
    if delay:
        time.sleep(delay)
    output.put(f"pet name: {seconds}")


def children_signals(pet_name, output, delay):
    """Answer with the signals that a child of this lookup starts with ignored or blocked."""
    status = subprocess.run(
        ["cat", "/proc/self/status"], capture_output=True, text=True, check=True
    ).stdout
    fields = dict(line.split(":\t") for line in status.splitlines() if ":\t" in line)
    output.put((int(fields["SigIgn"], 16), int(fields["SigBlk"], 16)))


def process_group(pet_name, output, delay):
    """Answer with this worker's process group and its parent's."""
    output.put((os.getpgid(0), os.getpgid(multiprocessing.parent_process().pid)))


def put_then_ctrl_c(pet_name, output, delay):
    """Put the result, wait until it is in the pipe, then press Ctrl-C in the parent."""
    output.put(f"pet name: {pet_name}")
    output.queue.close()
    output.queue.join_thread()  # the queue's feeder thread has written it all
    os.kill(multiprocessing.parent_process().pid, signal.SIGINT)
    time.sleep(60)


def child_then_exit(pet_name, output, delay):
    """Leave a `sleep` that inherits every inheritable file, then exit without a result."""
    subprocess.Popen(["sleep", pet_name], close_fds=False)
    os._exit(0)
