"""Mutation test for mp.py: does the suite catch plausible bugs?

Each mutation below is one bug someone could write, or copy, into mp.py; at
least one for each fix the kit makes to the post. For each, the script copies
the kit to a temporary folder, makes that one change, and runs the suite there
with `-x`. A mutant counts as killed only when:

- a test fails on it, with the suite's timing checks switched off
  (MP_TEST_TIMING=off), so that no kill comes from a timing check alone; and
- the same failing tests then pass on an unmutated copy, run right after,
  under the same load, so that no kill comes from a flaky test. (A mutant
  whose suite cannot be collected counts when the unmutated one can.)

Prints each mutant's fate and the score.

    .venv/bin/python .ci/mutants.py [--only WORD]

It takes about ten minutes on 2 cores (a survivor runs the whole suite); CI
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
    # The post's steps, and fix 1: the __main__ guard
    (
        "the __main__ guard dropped, as in the post",
        'if __name__ == "__main__":\n    sys.exit(main())',
        "sys.exit(main())",
    ),
    (
        "every pet name looked up for the first person",
        'args = (lookup, (person, entry["pet_name"]), output, delay)',
        'args = (lookup, (person, next(iter(pet_maps.values()))["pet_name"]), output, delay)',
    ),
    # Fix 2: read every result before joining
    (
        "join before reading the results, as in the post",
        "        started = time.monotonic()\n",
        (
            "        for process in processes.values():\n"
            "            process.join()\n"
            "        started = time.monotonic()\n"
        ),
    ),
    # Fix 3: a bounded get(), and the workers' exit codes
    ("get() without a time limit", "output.get(timeout=0.1)", "output.get()"),
    (
        "get() with a 10 s time limit",
        "output.get(timeout=0.1)",
        "output.get(timeout=10)",
    ),
    (
        "dead workers never looked for",
        "ended = not process.is_alive() and output.empty()",
        "ended = False",
    ),
    (
        "a worker that ended taken for dead, its result still in the pipe",
        "ended = not process.is_alive() and output.empty()",
        "ended = not process.is_alive()",
    ),
    (
        "a person whose result came in judged again",
        "                if person in results:\n                    continue\n",
        "",
    ),
    (
        "the message without the person",
        'raise PetLookupError(f"no result for {person!r} ({why})")',
        'raise PetLookupError(f"no result ({why})")',
    ),
    (
        "the message without the exit code",
        'why = f"exit code {process.exitcode}" if ended else "timed out"',
        'why = "it ended" if ended else "timed out"',
    ),
    ("no clean-up on a failure", "        stop(processes.values())", "        pass"),
    # Fix 4: Ctrl-C, SIGTERM and SIGHUP
    ("SIGHUP not a stop signal", "    STOP_SIGNALS.append(signal.SIGHUP)", "    pass"),
    (
        "Ctrl-C not ignored while the workers start",
        "number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS",
        "number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS[1:]",
    ),
    (
        "SIGHUP not ignored while the workers start",
        "number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS",
        "number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS[:2]",
    ),
    (
        "SIGTERM ignored while the workers start, not held",
        "    signal.signal(signal.SIGTERM, lambda number, frame: waiting.append(number))",
        "    pass",
    ),
    (
        "a SIGTERM held while the workers start, then dropped",
        "            signal.raise_signal(signal.SIGTERM)",
        "            pass",
    ),
    (
        "the handlers not put back once the workers have started",
        "            signal.signal(number, handler)",
        "            pass",
    ),
    (
        "the worker keeps the handler fork copied",
        "    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler fork copied",
        "    pass",
    ),
    (
        "a second stop signal interrupts the clean-up",
        "        signal.signal(stop_signal, signal.SIG_IGN)  # so the clean-up can finish",
        "        pass",
    ),
    (
        "no line on a stop signal",
        '    print(f"mp.py: stopped by {signal.Signals(number).name}", file=sys.stderr)',
        "    pass",
    ),
    (
        "status 1 on a stop signal",
        "raise SystemExit(128 + number)",
        "raise SystemExit(1)",
    ),
    (
        "nohup's ignored SIGHUP overridden",
        "if signal.getsignal(number) is not signal.SIG_IGN:",
        "if True:",
    ),
    # Fix 5: each line in one write
    (
        "print() writes the text and the newline apart",
        'sys.stdout.write(text + "\\n")',
        "print(text)",
    ),
    (
        "lines not flushed as they are written",
        "        sys.stdout.flush()  # here, so that a reader who has gone is noticed here\n",
        "",
    ),
    # Fix 6: a reader that leaves
    (
        "BrokenPipeError not caught",
        "except BrokenPipeError:",
        "except ZeroDivisionError:",
    ),
    (
        "stdout left on the broken pipe, for Python to flush at exit",
        "os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())",
        "pass",
    ),
    (
        "status 0 when the reader has gone",
        "    return 1  # the reader has gone",
        "    return 0  # the reader has gone",
    ),
    # Fix 7: bad entries in pets.py
    (
        "only entries that are not mappings refused",
        'if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):',
        "if not isinstance(entry, Mapping):",
    ),
    (
        "a pet name that is not a string let through",
        'if not isinstance(entry, Mapping) or not isinstance(entry.get("pet_name"), str):',
        'if not isinstance(entry, Mapping) or "pet_name" not in entry:',
    ),
    (
        "the data checked only after the processes start",
        [
            ("    check_input(pet_maps, delay)\n", ""),
            (
                "        started = time.monotonic()\n",
                "        check_input(pet_maps, delay)\n        started = time.monotonic()\n",
            ),
        ],
    ),
    (
        "the command line's error taken for a traceback",
        "except PetLookupError as error:",
        "except ValueError as error:",
    ),
    (
        "negative seconds let through",
        "if not 0 <= float(value) < math.inf:",
        "if not float(value) < math.inf:",
    ),
    # Fix 8: --timeout
    (
        "--timeout never checked",
        "overdue = timeout is not None and time.monotonic() - started > timeout",
        "overdue = False",
    ),
    (
        "--timeout checked only while no result is waiting",
        "overdue = timeout is not None and time.monotonic() - started > timeout",
        "overdue = timeout is not None and output.empty() and time.monotonic() - started > timeout",
    ),
    (
        "no terminate(): SIGKILL a second later",
        "        process.terminate()\n",
        "        pass\n",
    ),
    (
        "no kill() for a worker that ignores SIGTERM",
        "            process.kill()\n",
        "            pass\n",
    ),
    (
        "ten seconds before kill()",
        "deadline = time.monotonic() + 1",
        "deadline = time.monotonic() + 10",
    ),
    # The options
    (
        "--delay ignored",
        "pet_maps, args.delay, args.start_method, lookup, args.timeout",
        "pet_maps, DELAY, args.start_method, lookup, args.timeout",
    ),
    (
        "--start-method ignored",
        "pet_maps, args.delay, args.start_method, lookup, args.timeout",
        "pet_maps, args.delay, None, lookup, args.timeout",
    ),
    (
        "--timeout ignored",
        "pet_maps, args.delay, args.start_method, lookup, args.timeout",
        "pet_maps, args.delay, args.start_method, lookup, None",
    ),
    (
        "--work cpu ignored",
        'lookup = compute_pet_name if args.work == "cpu" else get_pet_name',
        "lookup = get_pet_name",
    ),
    (
        "--work cpu sleeps instead of computing",
        (
            "    while time.process_time() < done_at:\n"
            "        sum(number * number for number in range(10_000))\n"
        ),
        "    time.sleep(delay)\n",
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


def collects(folder: Path) -> bool:
    """Whether the suite in `folder` can be collected."""
    return run_suite(folder, ["--collect-only"])[0]


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
            elif not failed and "did not finish" not in last and collects(pristine):
                # The mutant's suite cannot even be collected; the unmutated one can.
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
