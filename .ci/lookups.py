"""Lookups that misbehave on cue, for the tests and the timeline picture.

Workers started by spawn or forkserver import the module a lookup comes from,
so these live here rather than in test_mp.py, which imports pytest.

A Scripted pet name is a str that acts when a lookup formats it, as the post's
`'pet name: {}'.format(pet_name)` does: it rings the Switchboard, does what its
script says, then formats as the plain name. Its connection stays open for the
life of its process, so the Switchboard sees each worker end, even one that no
one has reaped yet. A pets.py of Scripted names drives `python3 mp.py` and the
README's programs without a line of them changed.

A script is steps separated by ";", done in order as the lookup formats the
name, but for "starting": that one acts where the name is pickled, in the
parent, as spawn or forkserver starts the worker.
    starting   ring as "PERSON:starting", and wait for the test's "go"
    answer     format as usual (what an empty script does too)
    wait N     sleep N seconds
    hold       wait for the test's "go"
    raise      raise RuntimeError("the lookup service is down")
    unpicklable  raise it holding a lock, as urllib's HTTPError holds a file
    unloadable   raise ServiceDown("pets", 503): it pickles, but does not unpickle
    exit       end the process at once, with exit code 3
    kill       end the process with SIGKILL (POSIX)
    hang       never answer: wait until stopped
    stubborn   ignore SIGTERM from here on, saying "sigterm" when one comes
    signals    say how Ctrl-C and SIGTERM are handled here
    method     say which start method started this process
    cputime    say how much CPU time this process has used
    big        answer with a megabyte

    python3 .ci/lookups.py baseline DELAY
        Ten plain processes that each sleep DELAY seconds under Python's
        default start method, no queue: the timing test's baseline.
"""

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time

LIFELINES = []  # this process's connections to the Switchboard, kept open


class Scripted(str):
    """A pet name that rings the Switchboard and acts when it is formatted."""

    def __new__(cls, name, person, script, address):
        self = super().__new__(cls, name)
        self.person, self.script, self.address = person, script, tuple(address)
        return self

    def __reduce__(self):
        steps = [step.strip() for step in self.script.split(";")]
        if "starting" in steps and multiprocessing.parent_process() is None:
            hold(self.address, f"{self.person}:starting")  # in the parent, starting
        return Scripted, (str(self), self.person, self.script, self.address)

    def __format__(self, spec):
        line = socket.create_connection(self.address)
        LIFELINES.append(line)
        line.sendall(f"hello {self.person} {os.getpid()}\n".encode())
        name = str(self)
        for step in filter(None, self.script.split(";")):
            name = act(step.strip(), line) or name
        return format(name, spec)


def hold(address, who):
    """Ring the Switchboard as `who`, and wait for its "go"."""
    line = socket.create_connection(address)
    LIFELINES.append(line)
    line.sendall(f"hello {who} {os.getpid()}\n".encode())
    line.recv(100)


class ServiceDown(Exception):
    """An exception pickle writes but cannot read back: it calls __init__ with one."""

    def __init__(self, service, status):
        super().__init__(f"the {service} service answered {status}")


def act(step, line):
    """Do one step of a script; return a name to format in place of the real one."""
    if step.startswith("wait "):
        time.sleep(float(step.split()[1]))
    elif step == "hold":
        line.recv(100)  # "go", or b"" if the test has gone
    elif step == "raise":
        raise RuntimeError("the lookup service is down")
    elif step == "unpicklable":
        error = RuntimeError("the lookup service is down")
        error.lock = threading.Lock()
        raise error
    elif step == "unloadable":
        raise ServiceDown("pets", 503)
    elif step == "exit":
        os._exit(3)
    elif step == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif step == "hang":
        while line.recv(100):  # until the test has gone, whatever it says
            pass
    elif step == "stubborn":
        signal.signal(signal.SIGTERM, lambda *_: line.sendall(b"sigterm\n"))
    elif step == "signals":
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        default = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        line.sendall(f"signals {int(ignored)} {int(default)}\n".encode())
    elif step == "cputime":
        line.sendall(f"cputime {time.process_time()}\n".encode())
    elif step == "method":
        line.sendall(f"method {multiprocessing.get_start_method()}\n".encode())
    elif step == "big":
        return "x" * 1_000_000
    elif step not in ("answer", "starting"):
        raise ValueError(f"no such step: {step!r}")
    return None


class Switchboard:
    """The tests' end of the Scripted names' connections: one per worker.

    wait(person, word) waits until that worker has said the word ("hello"
    as its lookup begins); go(person) lets a held lookup go on; gone() waits
    until workers' connections close, which is when their processes end.
    Each event is stamped with time.monotonic() as it arrives.
    """

    def __init__(self, limit=20):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()
        self.limit = limit  # seconds a wait may take before the test fails
        self.said, self.lines, self.ended = {}, {}, {}
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self.accept, daemon=True)]
        self.threads[0].start()

    def accept(self):
        self.server.settimeout(0.05)  # so that close() is seen soon
        while self.server.fileno() != -1:
            try:
                line, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            line.settimeout(None)
            listener = threading.Thread(target=self.listen, args=(line,), daemon=True)
            self.threads.append(listener)
            listener.start()

    def listen(self, line):
        person = None
        for text in line.makefile("r", encoding="utf-8"):
            word, *rest = text.split()
            with self.changed:
                if word == "hello":
                    person, *rest = rest
                    self.lines[person] = line
                    self.said[person] = {}
                self.said[person][word] = (time.monotonic(), rest)
                self.changed.notify_all()
        with self.changed:
            self.ended[person] = time.monotonic()
            self.changed.notify_all()

    def until(self, ready, what):
        with self.changed:
            if not self.changed.wait_for(ready, self.limit):
                raise AssertionError(f"waited {self.limit} s for {what}")

    def wait(self, person, word="hello"):
        """(when, what else it said) once `person`'s lookup has said `word`."""
        self.until(lambda: word in self.said.get(person, {}), f"{person}: {word}")
        return self.said[person][word]

    def pid(self, person):
        return int(self.wait(person)[1][0])

    def go(self, person):
        self.wait(person)
        self.lines[person].sendall(b"go\n")

    def gone(self, people=None):
        """Wait until the listed workers (all that rang, by default) have ended."""
        with self.changed:
            people = set(self.said if people is None else people)
        self.until(lambda: people <= self.ended.keys(), f"{sorted(people)} to end")

    def running(self):
        """The people whose workers have rung and not yet ended."""
        with self.changed:
            return sorted(self.said.keys() - self.ended.keys())

    def close(self):
        """Stop listening, and wait for its threads, so that none is left to fork."""
        self.server.close()
        with self.changed:
            lines = list(self.lines.values())
        for line in lines:
            with contextlib.suppress(OSError):
                line.shutdown(socket.SHUT_RDWR)
        for thread in self.threads:
            thread.join()
        for line in lines:
            line.close()


def pets_source(board, names, scripts):
    """A pets.py of Scripted names: scripts is {person: script}, "answer" if unlisted."""
    entries = "".join(
        f"    {person!r}: {{'pet_name': Scripted({name!r}, {person!r}, "
        f"{scripts.get(person, 'answer')!r}, {tuple(board.address)!r})}},\n"
        for person, name in names.items()
    )
    return f"from lookups import Scripted\n\npet_maps = {{\n{entries}}}\n"


def stamped(data, output, delay):
    """The post's wait, answering with when it began and ended, by the clock."""
    began = time.time()
    time.sleep(delay)
    output.put((data[0], (began, time.time(), multiprocessing.get_start_method())))


def signals(data, output, delay):
    """Answer whether Ctrl-C is ignored here and SIGTERM has its default action."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    output.put((data[0], (ignored, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)))


def exits(data, output, delay):
    """A lookup whose process ends at once, with exit code 3 and no result."""
    os._exit(3)


def baseline(target, delay):
    """Ten plain processes running target(delay): their time, start-up apart."""
    processes = [
        multiprocessing.Process(target=target, args=(delay,)) for _ in range(10)
    ]
    started = time.monotonic()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return time.monotonic() - started


def spin(seconds):
    """Compute for `seconds` of this process's CPU time."""
    done_at = time.process_time() + seconds
    while time.process_time() < done_at:
        pass


if __name__ == "__main__":
    if sys.argv[1] == "baseline":
        print(baseline(time.sleep, float(sys.argv[2])))
