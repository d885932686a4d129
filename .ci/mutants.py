"""Mutation test for mp.py: does the suite catch plausible bugs?

Each mutation below is one bug someone could write (or copy) into mp.py. For
each, the script copies the kit to a temporary folder, makes that one change,
and runs the suite there with `-x`. A mutant is killed when the suite fails,
and survives when it passes. Prints each mutant's fate and the score.

    .venv/bin/python .ci/mutants.py [--only WORD]

It takes a quarter of an hour or so on 2 cores (a survivor runs the whole
suite); CI does not run it.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent

# (what the bug is, the text in mp.py, what it becomes)
MUTATIONS = [
    (
        "join before draining the queue",
        "        while len(results) < len(processes):",
        (
            "        for process in processes.values():\n"
            "            process.join()\n"
            "        while len(results) < len(processes):"
        ),
    ),
    (
        "results returned sorted",
        "return list(results.values())",
        "return sorted(results.values())",
    ),
    (
        "a duplicate result dropped",
        "return list(results.values())",
        "return list(dict.fromkeys(results.values()))",
    ),
    (
        "--delay ignored on the command line",
        "pet_maps, args.delay, args.start_method",
        "pet_maps, DELAY, args.start_method",
    ),
    (
        "--timeout ignored on the command line",
        "lookup, args.timeout, times",
        "lookup, None, times",
    ),
    ("--work ignored", 'if args.work == "cpu" else', 'if args.work == "gpu" else'),
    (
        "--start-method ignored",
        "pet_maps, args.delay, args.start_method",
        "pet_maps, args.delay, None",
    ),
    ("a blocking get()", "output.get(timeout=POLL)", "output.get()"),
    ("polling every 2 s", "POLL = 0.1", "POLL = 2.0"),
    (
        "workers do not ignore Ctrl-C",
        "signal.signal(signal.SIGINT, signal.SIG_IGN)",
        "pass",
    ),
    (
        "no hold on signals while starting a worker",
        "            with signals_held():\n                process.start()",
        "            process.start()",
    ),
    (
        "signals held back for good in the workers",
        "signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)\n    # A parent",
        "pass\n    # A parent",
    ),
    (
        "workers keep the parent's SIGTERM handler",
        "signal.signal(number, signal.SIG_DFL)",
        "pass",
    ),
    (
        "workers do not watch for their parent's end",
        "threading.Thread(target=exit_after, args=(sentinel,), daemon=True).start()",
        "pass",
    ),
    ("no SIGTERM to workers on an error", "process.terminate()", "pass"),
    ("no kill after the grace period", "process.kill()", "pass"),
    ("a 5 s grace period", "GRACE = 0.5", "GRACE = 5.0"),
    (
        "a second Ctrl-C can cut the clean-up short",
        "with signals_held():  # a second Ctrl-C",
        "with contextlib.nullcontext():  # a second Ctrl-C",
    ),
    ("no SIGTERM or SIGHUP handling", "signal.signal(number, exit_on_signal)", "pass"),
    (
        "SIGTERM exits with status 1",
        "raise SystemExit(128 + number)",
        "raise SystemExit(1)",
    ),
    ("Ctrl-C exits with status 1", "return 130", "return 1"),
    (
        "print() instead of one flushed write",
        'sys.stdout.write("adding to queue\\n")\n    sys.stdout.flush()',
        'print("adding to queue")',
    ),
    (
        "the worker's line not flushed before its put",
        'sys.stdout.write("adding to queue\\n")\n    sys.stdout.flush()',
        'sys.stdout.write("adding to queue\\n")',
    ),
    (
        "the person left out of the message",
        'output.put((person, f"pet name: {pet_name}"))',
        'output.put((pet_name, f"pet name: {pet_name}"))',
    ),
    (
        "a killed worker taken for an exit",
        "code is not None and code < 0",
        "code is not None and code > 0",
    ),
    (
        "an exit with status 0 and no result not noticed",
        "elif person in exited:",
        "elif False:",
    ),
    (
        "exit codes read after the wait",
        "        with contextlib.suppress(queue.Empty):",
        "        time.sleep(POLL)\n        with contextlib.suppress(queue.Empty):",
    ),
    (
        "the time limit doubled",
        "time.monotonic() - started[person] > timeout",
        "time.monotonic() - started[person] > 2 * timeout",
    ),
    (
        "a CPU lookup that sleeps",
        "    while time.thread_time() < done_at:\n        sum(number * number for number in range(1000))",
        "    time.sleep(delay)",
    ),
    (
        "a CPU lookup timed by the wall clock",
        "done_at = time.thread_time() + delay",
        "done_at = time.monotonic() + delay\n    time.thread_time = time.monotonic",
    ),
    (
        "the CPU lookup waits its delay again",
        "get_pet_name(person, pet_name, output, delay=0)",
        "get_pet_name(person, pet_name, output, delay)",
    ),
    (
        "the best speedup from the wrong count",
        'best = len(times) if args.work == "sleep" else usable_cores()',
        'best = len(times) if args.work == "cpu" else usable_cores()',
    ),
    ("the speedup upside down", "{work / wall:.1f}x", "{wall / work:.1f}x"),
    ("rows too wide", "scale = 54 / max(wall, 1e-3)", "scale = 64 / max(wall, 1e-3)"),
    (
        "rows in the order of names",
        "key=lambda item: item[1]",
        "key=lambda item: item[0]",
    ),
    (
        "arrival taken as start plus delay",
        "times[person] = (started[person], time.monotonic())",
        "times[person] = (started[person], started[person] + delay)",
    ),
    (
        "a closed stdout in the parent not silenced",
        "    except BrokenPipeError:  # stdout closed early, as by `python3 mp.py | head -1`\n        silence_stdout()",
        "    except BrokenPipeError:  # stdout closed early, as by `python3 mp.py | head -1`\n        pass",
    ),
    (
        "a closed stdout in a worker reported as a failure",
        "    except BrokenPipeError:  # stdout closed early: tell the parent to end quietly",
        "    except ZeroDivisionError:",
    ),
    (
        "the parent's output not flushed inside the try",
        "        sys.stdout.flush()  # so that",
        "        pass  # so that",
    ),
    ("open files counted once per worker", "needed = 2 * people", "needed = people"),
    (
        "no check of the open-files limit",
        "    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]",
        "    return",
    ),
    (
        "no check for POSIX semaphores",
        "except (ImportError, OSError) as error:  # no working /dev/shm",
        "except ImportError as error:  # no working /dev/shm",
    ),
    ("a negative delay allowed", "if not 0 <= number <", "if not -10 <= number <"),
    ("an infinite delay allowed", 'number < float("inf")', 'number <= float("inf")'),
    (
        "a pet name that is not a string allowed",
        'or not isinstance(entry.get("pet_name"), str)',
        'or "pet_name" not in entry',
    ),
    ("pets.py not named in a data error", 'where = " in pets.py" if', 'where = "" if'),
    (
        "the exception's type left out of a failure",
        "raised {type(error).__name__}: {error}",
        "raised {error}",
    ),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="run only the mutations whose name has this word"
    )
    args = parser.parse_args()
    source = (KIT / "mp.py").read_text()
    files = subprocess.run(
        ["git", "ls-files"], cwd=KIT, capture_output=True, text=True, check=True
    ).stdout.split()
    killed, survived, unapplied = [], [], []
    baseline = [("none: the kit as it is", "", "")] if not args.only else []
    for name, old, new in baseline + MUTATIONS:
        if args.only and args.only not in name:
            continue
        if name.startswith("none"):
            pass
        elif source.count(old) != 1:
            unapplied.append(name)
            print(
                f"NOT APPLIED  {name}: the text is in mp.py {source.count(old)} times"
            )
            continue
        with tempfile.TemporaryDirectory() as folder:
            for file in files:
                (Path(folder) / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(KIT / file, Path(folder) / file)
            (Path(folder) / "mp.py").write_text(
                source.replace(old, new) if old else source
            )
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-x",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                    ],
                    check=False,
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                caught = done.returncode != 0
                why = (
                    done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
                )
            except subprocess.TimeoutExpired:
                caught, why = True, "the suite did not finish in 300 s"
        took = time.monotonic() - started
        if name.startswith("none"):
            print(f"baseline  {name} ({took:.0f} s): {why}", flush=True)
            if caught:
                print("the suite fails without any mutation: no score")
                return 1
            continue
        fate = "killed  " if caught else "SURVIVED"
        (killed if caught else survived).append(name)
        print(f"{fate}  {name} ({took:.0f} s): {why}", flush=True)
    tried = len(killed) + len(survived)
    print(
        f"\n{len(killed)} of {tried} mutants killed ({100 * len(killed) / max(tried, 1):.0f} %)"
    )
    for name in survived:
        print(f"  survived: {name}")
    return 1 if unapplied else 0


if __name__ == "__main__":
    sys.exit(main())
