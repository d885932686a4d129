"""Mutation test for mp.py: does the suite catch plausible bugs?

Each mutation below is one bug someone could write (or copy) into mp.py. For
each, the script copies the kit to a temporary folder, makes that one change,
and runs the suite there with `-x`. A mutant counts as killed only when:

- a test fails on it, with the suite's timing checks switched off
  (MP_TEST_TIMING=off), so that no kill comes from a timing check alone; and
- the same failing tests then pass on an unmutated copy, run right after,
  under the same load, so that no kill comes from a flaky test.

Prints each mutant's fate and the score.

    .venv/bin/python .ci/mutants.py [--only WORD]

It takes about 20 minutes on 2 cores (a survivor runs the whole suite); CI
does not run it.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent

# (what the bug is, the text in mp.py, what it becomes), or for a bug that
# takes more than one change, (what the bug is, [(text, what it becomes), ...])
MUTATIONS = [
    # The post's steps
    (
        "join before reading the queue",
        "        supervisor.start_all()\n",
        (
            "        supervisor.start_all()\n"
            "        for state in supervisor.workers:\n"
            "            state.process.join()\n"
        ),
    ),
    (
        "results returned sorted",
        "    return [arrival.result for arrival in arrivals]",
        "    return sorted(arrival.result for arrival in arrivals)",
    ),
    (
        "a duplicate result dropped",
        "    return [arrival.result for arrival in arrivals]",
        "    return list(dict.fromkeys(arrival.result for arrival in arrivals))",
    ),
    (
        "--delay ignored on the command line",
        "pet_map, args.delay, args.start_method, lookup",
        "pet_map, DELAY, args.start_method, lookup",
    ),
    (
        "--timeout ignored on the command line",
        "lookup, args.timeout, arrivals",
        "lookup, None, arrivals",
    ),
    ("--work ignored", 'if args.work == "cpu" else', 'if args.work == "gpu" else'),
    (
        "--start-method ignored",
        "pet_map, args.delay, args.start_method, lookup",
        "pet_map, args.delay, None, lookup",
    ),
    # The supervisor
    (
        "a blocking read of whole messages, as get() does",
        (
            "            self.unread += os.read(self.pipe.fileno(), 1 << 20)\n"
            "            for message"
        ),
        (
            "            whole = self.pipe.recv_bytes()\n"
            '            self.unread += struct.pack("!i", len(whole)) + whole\n'
            "            for message"
        ),
    ),
    (
        "no time limit on the wait",
        "        return None if nearest == math.inf else max(0, nearest - time.monotonic())",
        "        return None",
    ),
    (
        "the time limit counted from the process's start",
        "            worker.deadline = worker.lookup_started + limit",
        "            worker.deadline = worker.started + limit",
    ),
    (
        "the time limit doubled",
        "            worker.deadline = worker.lookup_started + limit",
        "            worker.deadline = worker.lookup_started + 2 * limit",
    ),
    (
        "no limit on a worker's start-up",
        '            worker.deadline, worker.overdue = worker.started + START_LIMIT, "start"',
        '            worker.deadline, worker.overdue = math.inf, "start"',
    ),
    (
        "deadlines checked only after 0.1 s with nothing arriving",
        [
            (
                "        return None if nearest == math.inf else max(0, nearest - time.monotonic())",
                "        return 0.1",
            ),
            (
                "        self.check_deadlines()\n\n    def read(self)",
                "        if not ready:\n            self.check_deadlines()\n\n    def read(self)",
            ),
        ],
    ),
    (
        "a lingering worker waited for forever",
        '            worker.deadline, worker.overdue = now + LINGER, "linger"',
        '            worker.deadline, worker.overdue = math.inf, "linger"',
    ),
    (
        "a lingering worker's hidden exit not looked for",
        "                if worker.process.exitcode is not None:",
        "                if False:",
    ),
    (
        "no warning for a worker stopped for lingering",
        (
            '        if worker.overdue == "kill":  # stopped for lingering after its result\n'
            "            warnings.warn("
        ),
        (
            '        if worker.overdue == "kill":  # stopped for lingering after its result\n'
            "            (lambda *args, **options: None)("
        ),
    ),
    (
        "a killed worker taken for an exit",
        "        elif code is not None and code < 0:",
        "        elif code is not None and code > 0:",
    ),
    (
        "an exit with status 0 and no result not noticed",
        "        elif not worker.has_result:\n",
        "        elif False:\n",
    ),
    (
        "what a lookup started left running after its worker exits",
        "        signal_group(worker.process.pid, signal.SIGKILL)\n        worker.process.join(GRACE)",
        "        worker.process.join(GRACE)",
    ),
    (
        "no SIGTERM to the workers on an error",
        (
            "                signal_worker(\n"
            "                    worker.process, signal.SIGKILL if starting else signal.SIGTERM\n"
            "                )"
        ),
        "                pass",
    ),
    (
        "no kill after the grace period",
        (
            "            for worker in running:  # any that ignore SIGTERM, and their children\n"
            "                signal_worker(worker.process, signal.SIGKILL)"
        ),
        (
            "            for worker in running:  # any that ignore SIGTERM, and their children\n"
            "                pass"
        ),
    ),
    (
        "a second Ctrl-C can cut the clean-up short",
        "        with signals_held():  # a second Ctrl-C must not cut the clean-up short",
        "        with contextlib.nullcontext():  # a second Ctrl-C",
    ),
    (
        "results already in the pipe dropped when the run ends",
        "            self.keep_results_left()",
        "            pass",
    ),
    (
        "a Ctrl-C can fall between reading a message and keeping it",
        "        with signals_held():\n            self.unread += os.read(",
        "        with contextlib.nullcontext():\n            self.unread += os.read(",
    ),
    (
        "a worker's traceback not kept as the cause",
        "            self.fail(worker, failure, cause=rebuild_cause(text, pickled))",
        "            self.fail(worker, failure)",
    ),
    (
        "a real-time signal not named",
        '            f"SIGRTMIN+{number - first}"\n            if first < number < last',
        '            f"signal {number}"\n            if first < number < last',
    ),
    # The worker's side
    (
        "a second result taken",
        "        if self.sent:\n            self.refuse(",
        "        if False:\n            self.refuse(",
    ),
    (
        "results not pickled before the feeder thread takes them",
        "            pickled = pickle.dumps(result)\n",
        "            pickled = result\n",
    ),
    (
        "a refused put forgotten once the lookup catches its error",
        "        self.problem = self.problem or problem\n",
        "",
    ),
    (
        "no hint for a result returned instead of put",
        '            hint = "" if returned is None else f" (it returned {returned!r} instead)"',
        '            hint = ""',
    ),
    (
        "the lookup sent to spawned workers as it is",
        '    if method == "fork":  # the child is a copy of this process: nothing to send',
        "    if True:",
    ),
    (
        "a worker that cannot start a thread prints a traceback",
        (
            '    except RuntimeError:  # "can\'t start new thread": see Outbox.send()\n'
            "        os._exit(NO_THREAD)"
        ),
        "    except ZeroDivisionError:\n        os._exit(NO_THREAD)",
    ),
    (
        "a worker's report of a failed stdout ignored",
        '        elif kind == "stdout":\n            raise StdoutError(*details)',
        '        elif kind == "stdout":\n            pass',
    ),
    (
        "a worker's stdout failure reported as a lookup's",
        "    except StdoutError as error:\n        silence_stdout()",
        "    except ZeroDivisionError as error:\n        silence_stdout()",
    ),
    # Signals
    (
        "no hold on signals while a worker starts",
        "                with signals_held():\n                    worker.process.start()",
        "                with contextlib.nullcontext():\n                    worker.process.start()",
    ),
    (
        "no hold on signals while the queue is made",
        "            with signals_held():\n                output = self.context.Queue()",
        "            with contextlib.nullcontext():\n                output = self.context.Queue()",
    ),
    (
        "signals left held after a start that fails (no finally)",
        "    try:\n        yield\n    finally:\n        signal.pthread_sigmask(signal.SIG_SETMASK, previous)",
        "    yield\n    signal.pthread_sigmask(signal.SIG_SETMASK, previous)",
    ),
    ("workers in their parent's process group", "    os.setpgid(0, 0)\n", ""),
    (
        "workers keep the parent's handlers",
        "            signal.signal(number, signal.SIG_DFL)\n    # The parent held",
        "            pass\n    # The parent held",
    ),
    (
        "a signal started ignored (nohup) not kept ignored in workers",
        (
            "        if signal.getsignal(number) is not signal.SIG_IGN:\n"
            "            signal.signal(number, signal.SIG_DFL)"
        ),
        "        if True:\n            signal.signal(number, signal.SIG_DFL)",
    ),
    (
        "signals held back for good in the workers",
        "    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)\n    # No program",
        "    # No program",
    ),
    (
        "a lookup's programs inherit multiprocessing's pipes",
        "                    os.set_inheritable(int(name), False)",
        "                    pass",
    ),
    (
        "workers do not watch for their parent's end",
        "    threading.Thread(target=end_with_parent, args=(sentinel,), daemon=True).start()",
        "    pass",
    ),
    (
        "a worker outlived by its lookup's children when the parent dies",
        "    os.killpg(os.getpid(), signal.SIGKILL)",
        "    os._exit(1)",
    ),
    (
        "a second stop signal not ignored",
        (
            "        for each in STOP_SIGNALS:  # one line, however many signals follow\n"
            "            signal.signal(each, signal.SIG_IGN)"
        ),
        "        pass",
    ),
    (
        "a signal started ignored (nohup) overridden by main()",
        "            if handler is not signal.SIG_IGN:\n                signal.signal(number, stop)",
        "            if True:\n                signal.signal(number, stop)",
    ),
    (
        "main()'s handlers left in place",
        "            signal.signal(number, signal.SIG_DFL if handler is None else handler)",
        "            pass",
    ),
    (
        "handlers set from any thread",
        "    if threading.current_thread() is not threading.main_thread():\n        yield\n        return\n    previous = {",
        "    previous = {",
    ),
    (
        "a stop signal exits with status 1",
        '        return 128 + stop.number, f"stopped by {signal_name(stop.number)}"',
        '        return 1, f"stopped by {signal_name(stop.number)}"',
    ),
    # Checks
    (
        "open files counted once per worker",
        "    needed = 2 * people",
        "    needed = people",
    ),
    (
        "no check of the open-files limit",
        "    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n    needed",
        "    return\n    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n    needed",
    ),
    (
        "threads not counted against the process limit",
        "    needed = 3 * people + 2",
        "    needed = people + 2",
    ),
    (
        "the tightest process limit not the one named",
        "        n, limit = min(left)",
        "        n, limit = max(left)",
    ),
    (
        "no check for POSIX semaphores",
        "        except (ImportError, OSError) as error:  # no working /dev/shm",
        "        except ImportError as error:  # no working /dev/shm",
    ),
    (
        "a failed start not explained",
        '    return f"{reason}: {error}" if reason else str(error)',
        "    return str(error)",
    ),
    (
        "closed standard files left for the queue's pipe to take",
        "        open_standard_fds()  # so that the queue's pipe cannot take their place",
        "        pass",
    ),
    (
        "a negative delay allowed",
        "    if not 0 <= number <= MAX_SECONDS:",
        "    if not -10 <= number <= MAX_SECONDS:",
    ),
    (
        "no upper limit on a delay",
        "    if not 0 <= number <= MAX_SECONDS:",
        "    if not 0 <= number:",
    ),
    (
        "a pet name that is not a string allowed",
        '        if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):',
        '        if not isinstance(entry, Mapping) or "pet_name" not in entry:',
    ),
    (
        "a syntax error in pets.py without its line",
        '            f"line {error.lineno}: {type(error).__name__}: {error.msg}"',
        '            f"{type(error).__name__}: {error.msg}"',
    ),
    (
        "pets.py imported from the import path",
        (
            '    spec = importlib.util.spec_from_file_location("pets", path)\n'
            "    module = importlib.util.module_from_spec(spec)\n"
            "    try:\n"
            "        spec.loader.exec_module(module)"
        ),
        "    try:\n        import pets as module",
    ),
    # Printing and the command line
    (
        "print() instead of one flushed write",
        '            sys.stdout.write(text + "\\n")\n            sys.stdout.flush()',
        "            print(text)",
    ),
    (
        "the worker's line not flushed before its put",
        '            sys.stdout.write(text + "\\n")\n            sys.stdout.flush()',
        '            sys.stdout.write(text + "\\n")',
    ),
    (
        "SIGTTOU not held for a worker's line",
        "        with signals_held([signal.SIGTTOU]):",
        "        with contextlib.nullcontext():",
    ),
    (
        "a closed stdout in the parent not noticed",
        "    if sys.stdout is None:\n        say(",
        "    if False:\n        say(",
    ),
    (
        "a stdout closed early not ended quietly",
        "            if error.errno == errno.EPIPE:",
        "            if False:",
    ),
    (
        "the command line says nothing of a lingering worker",
        '        say(f"warning: {warning.message}")',
        "        pass",
    ),
    (
        "names outside ASCII not escaped",
        '        sys.stdout.reconfigure(errors="backslashreplace")',
        "        pass",
    ),
    (
        "the results that arrived not printed when the run fails",
        "    if results or complete:",
        "    if complete:",
    ),
    (
        "timeline names padded before they are escaped",
        '        name = str(arrival.person).encode(encoding, "backslashreplace").decode(encoding)',
        "        name = str(arrival.person)",
    ),
    (
        "the best speedup from the wrong count",
        '        best = len(arrivals) if args.work == "sleep" else usable_cores()',
        '        best = len(arrivals) if args.work == "cpu" else usable_cores()',
    ),
    (
        "the cores this process may use not asked",
        "    return len(cores_allowed(0)) if cores_allowed else os.cpu_count() or 1",
        "    return os.cpu_count() or 1",
    ),
    (
        "the speedup upside down",
        "{work / max(wall, 1e-9):.1f}x",
        "{max(wall, 1e-9) / work if work else 0:.1f}x",
    ),
    (
        "rows in the order of names",
        "    for arrival in sorted(arrivals, key=lambda arrival: arrival.process_started):",
        "    for arrival in sorted(arrivals, key=lambda arrival: str(arrival.person)):",
    ),
    (
        "a worker's start-up drawn as its lookup",
        '        bar = " " * started + "-" * (began - started) + "=" * (arrived - began + 1)',
        '        bar = " " * started + "=" * (arrived - started + 1)',
    ),
    (
        "the worker's own start time not used",
        "            worker.lookup_started = began if worker.started <= began <= now else now",
        "            worker.lookup_started = now",
    ),
    (
        "the description taken from the docstring",
        "    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)",
        "    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\\n')[0])",
    ),
]


def edits(mutation: tuple) -> list[tuple[str, str]]:
    """A mutation's changes to mp.py, as (text, what it becomes) pairs."""
    return mutation[1] if len(mutation) == 2 else [mutation[1:]]


def run_suite(
    folder: Path, tests: list[str] | None = None
) -> tuple[bool, list[str], str]:
    """Run the suite (or some of its tests) in `folder`, timing checks off.

    Returns whether it passed, the failing tests, and its last line.
    """
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-rf",
        "-p",
        "no:cacheprovider",
    ]
    environment = {**os.environ, "MP_TEST_TIMING": "off"}
    try:
        done = subprocess.run(
            [*command, *(tests or [])],
            check=False,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            env=environment,
        )
    except subprocess.TimeoutExpired:
        return False, [], "the suite did not finish in 300 s"
    # "FAILED test_mp.py::name[its parameters] - what went wrong"
    failed = re.findall(
        r"^FAILED (\S+?(?:\[.*?\])?)(?: - .*)?$", done.stdout, re.MULTILINE
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return done.returncode == 0, failed, last


def copy_kit(folder: Path, files: list[str], source: str) -> Path:
    """The kit's tracked files in `folder`, with `source` as its mp.py."""
    for file in files:
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(KIT / file, folder / file)
    (folder / "mp.py").write_text(source)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="run only the mutations whose name has this word in it"
    )
    args = parser.parse_args()
    source = (KIT / "mp.py").read_text()
    files = subprocess.run(
        ["git", "ls-files"], cwd=KIT, capture_output=True, text=True, check=True
    ).stdout.split()
    chosen = [(m[0], edits(m)) for m in MUTATIONS if not args.only or args.only in m[0]]
    unapplied = [
        name
        for name, changes in chosen
        if any(source.count(old) != 1 for old, _ in changes)
    ]
    for name in unapplied:
        print(f"NOT APPLIED  {name}: its text is not in mp.py exactly once")
    killed, survived, flaky = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        pristine = copy_kit(Path(scratch) / "pristine", files, source)
        started = time.monotonic()
        passed, failed, last = run_suite(pristine)
        print(
            f"baseline, the kit as it is ({time.monotonic() - started:.0f} s): {last}"
        )
        if not passed:
            print(f"the suite fails without any mutation ({failed}): no score")
            return 1
        for number, (name, changes) in enumerate(chosen):
            if name in unapplied:
                continue
            started = time.monotonic()
            mutated = source
            for old, new in changes:
                mutated = mutated.replace(old, new)
            mutant = copy_kit(Path(scratch) / f"mutant{number}", files, mutated)
            passed, failed, last = run_suite(mutant)
            if passed:
                fate, where = "SURVIVED", survived
            elif failed and run_suite(pristine, failed)[0]:
                fate, where = "killed  ", killed
            else:  # nothing to rerun (the suite hung), or the test fails unmutated too
                fate, where = "FLAKY   ", flaky
            where.append(name)
            took = time.monotonic() - started
            print(
                f"{fate}  {name} ({took:.0f} s): {', '.join(failed) or last}",
                flush=True,
            )
            shutil.rmtree(mutant)
    tried = len(killed) + len(survived) + len(flaky)
    score = 100 * len(killed) / max(tried, 1)
    print(f"\n{len(killed)} of {tried} mutants killed ({score:.0f} %)")
    for name in survived:
        print(f"  survived: {name}")
    for name in flaky:
        print(f"  not counted (no test failed that passes unmutated): {name}")
    return 1 if unapplied else 0


if __name__ == "__main__":
    sys.exit(main())
