"""Mutation test: does the suite catch plausible bugs in the kit?

Each mutation below is one bug someone could write, or copy, into mp.py or the
README's programs: at least one for each promise the kit makes. For each, the
script copies the kit to a temporary folder, makes that one change, and runs
the suite there with -x. A mutant counts as killed only when

- a test fails on it with the timing checks off (MP_TEST_TIMING=off), so that
  no kill comes from a timing check alone; and
- the failing test then passes on an unmutated copy, run right after under the
  same load, so that no kill comes from a flaky test.

Prints each mutant's fate, and the score.

    .venv/bin/python .ci/mutants.py [--only WORD]

It takes about fifteen minutes on 2 cores; CI does not run it.
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
README = "README.md"

# (what the bug is, the file, [(text in it, what that text becomes), ...])
MUTATIONS = [
    # 1. Every start method; the __main__ guard
    (
        "the __main__ guard dropped, as in the post",
        "mp.py",
        [('if __name__ == "__main__":\n    sys.exit(main())', "sys.exit(main())")],
    ),
    (
        "--start-method chosen but not used",
        "mp.py",
        [("    mp.set_start_method(args.start_method, force=True)", "")],
    ),
    (
        "--start-method without its choices",
        "mp.py",
        [('"--start-method", choices=mp.get_all_start_methods()', '"--start-method"')],
    ),
    (
        "every lookup given the first person's pet name",
        "mp.py",
        [
            (
                '(person, entry["pet_name"])',
                '(person, next(iter(pet_maps.values()))["pet_name"])',
            )
        ],
    ),
    # 2. Every result read before any join
    (
        "join before reading the results, as in the post",
        "mp.py",
        [
            (
                "            process.start()\n",
                (
                    "            process.start()\n        for process in processes.values():\n"
                    "            process.join()\n"
                ),
            )
        ],
    ),
    # 3. A lookup's own exception comes back, named as it happens, the run goes on
    (
        "the lookup's exception not caught in the worker",
        "mp.py",
        [
            (
                "    except Exception as error:  # noqa: BLE001",
                "    except ZeroDivisionError as error:",
            )
        ],
    ),
    (
        "the exception sent back as text, taken for a result",
        "mp.py",
        [
            (
                "output.put((data[0], pickle.loads(pickle.dumps(error))))",
                "output.put((data[0], repr(error)))",
            )
        ],
    ),
    (
        "an exception that does not pickle sent all the same, and lost",
        "mp.py",
        [
            (
                "output.put((data[0], RuntimeError(repr(error))))",
                "output.put((data[0], error))",
            )
        ],
    ),
    (
        "failures named only once every lookup is over",
        "mp.py",
        [
            (
                "                    if on_failure is not None:\n                        on_failure(person, answer)\n",
                "",
            ),
            (
                "    if failures:\n        raise",
                (
                    "    for person, answer in failures.items():\n        if on_failure is not None:\n"
                    "            on_failure(person, answer)\n    if failures:\n        raise"
                ),
            ),
        ],
    ),
    (
        "find_pet_names() printing each failure itself",
        "mp.py",
        [
            (
                "                    failures[person] = answer\n",
                "                    failures[person] = answer\n                    print(person, answer, file=sys.stderr)\n",
            )
        ],
    ),
    (
        "the first failure ends the run",
        "mp.py",
        [
            (
                "                    failures[person] = answer\n",
                "                    failures[person] = answer\n                    waiting.clear()\n",
            )
        ],
    ),
    (
        "a failure named without its type",
        "mp.py",
        [("{person}: {type(error).__name__}: {error}", "{person}: {error}")],
    ),
    # 4. A worker that ends without a result is named with its exit code
    (
        "dead workers never looked for",
        "mp.py",
        [("if not process.is_alive() and output.empty():", "if False:")],
    ),
    (
        "a worker taken for dead while results wait in the pipe",
        "mp.py",
        [
            (
                "if not process.is_alive() and output.empty():",
                "if not process.is_alive():",
            )
        ],
    ),
    (
        "a second word on a person counted again",
        "mp.py",
        [
            (
                (
                    "                if waiting.pop(person, None) is None:  # only its first word counts\n"
                    "                    continue\n"
                ),
                "                waiting.pop(person, None)\n",
            )
        ],
    ),
    (
        "a dead worker named without its exit code",
        "mp.py",
        [('ChildProcessError(f"exit code {code}")', 'ChildProcessError("no result")')],
    ),
    # 5. At the end: the results that came back, status 1, one exception
    (
        "status 0 though lookups failed",
        "mp.py",
        [("results, status = error.results, 1", "results, status = error.results, 0")],
    ),
    (
        "the others' results dropped when one fails",
        "mp.py",
        [("results, status = error.results, 1", "results, status = {}, 1")],
    ),
    (
        "PetLookupError without the results that came back",
        "mp.py",
        [
            (
                "raise PetLookupError(failures, results)",
                "raise PetLookupError(failures, {})",
            )
        ],
    ),
    (
        "PetLookupError's message naming no one",
        "mp.py",
        [
            (
                "f\"no pet name for {', '.join(map(str, failures))}\"",
                '"some lookups failed"',
            )
        ],
    ),
    # 6. --timeout
    (
        "--timeout 0 meaning no limit",
        "mp.py",
        [("math.inf if timeout is None else", "math.inf if not timeout else")],
    ),
    (
        "the timeout clock started before the workers",
        "mp.py",
        [
            (
                "        deadline = math.inf if timeout is None else time.monotonic() + timeout\n",
                "",
            ),
            (
                "    results, failures, waiting = {}, {}, dict(processes)\n",
                (
                    "    results, failures, waiting = {}, {}, dict(processes)\n"
                    "    deadline = math.inf if timeout is None else time.monotonic() + timeout\n"
                ),
            ),
        ],
    ),
    (
        "a dead worker named as timed out once time has run out",
        "mp.py",
        [
            (
                "                if not process.is_alive() and output.empty():\n",
                (
                    "                if time.monotonic() >= deadline:\n"
                    '                    answers.append((person, TimeoutError(f"after {timeout:g} s")))\n'
                    "                elif not process.is_alive() and output.empty():\n"
                ),
            )
        ],
    ),
    (
        "the stragglers never stopped",
        "mp.py",
        [
            ("        for process in started:\n            process.terminate()\n", ""),
            ("            process.kill()\n", ""),
        ],
    ),
    (
        "no terminate() first: kill() after the grace second",
        "mp.py",
        [("        for process in started:\n            process.terminate()\n", "")],
    ),
    (
        "a second of grace for each straggler",
        "mp.py",
        [
            (
                (
                    "        deadline = time.monotonic() + 1  # one second for them all, not one each\n"
                    "        for process in started:\n"
                ),
                "        for process in started:\n            deadline = time.monotonic() + 1\n",
            )
        ],
    ),
    (
        "--delay=inf accepted",
        "mp.py",
        [("0 <= args.delay < math.inf", "0 <= args.delay")],
    ),
    (
        "a negative --timeout accepted",
        "mp.py",
        [
            (
                "not 0 <= (args.timeout or 0) < math.inf",
                "(args.timeout or 0) == math.inf",
            )
        ],
    ),
    # 7. Stop signals
    (
        "workers that take Ctrl-C themselves",
        "mp.py",
        [("        signal.signal(number, signal.SIG_IGN)\n", "        pass\n")],
    ),
    (
        "workers that keep the handler fork copied for SIGTERM",
        "mp.py",
        [
            (
                "    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and terminate() ends a worker\n",
                "",
            )
        ],
    ),
    (
        "the stop handler acting in a worker that fork copied it into",
        "mp.py",
        [("if os.getpid() == parent:", "if True:")],
    ),
    (
        "the workers stopped only when the run ends well",
        "mp.py",
        [
            (
                "    finally:\n        stop(processes.values())",
                "    finally:\n        pass\n    stop(processes.values())",
            )
        ],
    ),
    (
        "a second Ctrl-C in the clean-up skipping kill()",
        "mp.py",
        [
            (
                "    try:\n        for process in started:\n            process.terminate()",
                "    if True:\n        for process in started:\n            process.terminate()",
            ),
            (
                "    finally:  # also when a second Ctrl-C cuts the wait short\n",
                "    if True:  # also when a second Ctrl-C cuts the wait short\n",
            ),
        ],
    ),
    (
        "a stop before every worker has started tripping on the unstarted",
        "mp.py",
        [
            (
                "started = [process for process in processes if process.pid is not None]",
                "started = list(processes)",
            )
        ],
    ),
    (
        "SIGHUP left to its default action",
        "mp.py",
        [('("SIGINT", "SIGTERM", "SIGHUP")', '("SIGINT", "SIGTERM")')],
    ),
    (
        "multiprocessing's helpers heard after a hang-up",
        "mp.py",
        [
            (
                "            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)\n",
                "            pass\n",
            )
        ],
    ),
    (
        "a stop signal's line without its name",
        "mp.py",
        [('f"mp.py: stopped by {name}\\n"', '"mp.py: stopped\\n"')],
    ),
    (
        "status 1 on a stop signal",
        "mp.py",
        [("SystemExit(128 + number)", "SystemExit(1)")],
    ),
    (
        "a hang-up caught though nohup ignores it",
        "mp.py",
        [("if signal.getsignal(number) is not signal.SIG_IGN:", "if True:")],
    ),
    # 8. Lines whole, | head quiet, a malformed entry named
    (
        "print() writing the newline apart",
        "mp.py",
        [
            (
                'print(text + "\\n", end="", file=file, flush=True)',
                "print(text, file=file, flush=True)",
            )
        ],
    ),
    (
        "a reader who leaves met with BrokenPipeError",
        "mp.py",
        [("    except BrokenPipeError:", "    except ZeroDivisionError:")],
    ),
    (
        "a malformed pets.py entry not named",
        "mp.py",
        [
            (
                (
                    '        if not isinstance(entry, dict) or not isinstance(entry.get("pet_name"), str):\n'
                    "            raise"
                ),
                "        if False:\n            raise",
            )
        ],
    ),
    (
        "a pet name of any type taken",
        "mp.py",
        [
            (
                'or not isinstance(entry.get("pet_name"), str)',
                'or "pet_name" not in entry',
            )
        ],
    ),
    # Everything that held before: --work cpu
    (
        "--work cpu taken, but the lookups wait",
        "mp.py",
        [('compute_pet_name if args.work == "cpu" else get_pet_name', "get_pet_name")],
    ),
    (
        "--work cpu also sleeping",
        "mp.py",
        [("get_pet_name(data, output, delay=0)", "get_pet_name(data, output, delay)")],
    ),
    (
        "--work cpu timed by the wall clock, not CPU time",
        "mp.py",
        [
            ("done_at = time.process_time() + delay", "done_at = time.time() + delay"),
            ("while time.process_time() < done_at:", "while time.time() < done_at:"),
        ],
    ),
    # The README's programs get the same fixes
    (
        "README program: workers that take Ctrl-C themselves",
        README,
        [
            (
                "    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to act on\n",
                "",
            )
        ],
    ),
    (
        "README program: a worker left running after Ctrl-C",
        README,
        [
            (
                "            if p.is_alive():\n                p.kill()\n",
                "            pass\n",
            )
        ],
    ),
    (
        "README program: the lookup's exception not sent back",
        README,
        [
            (
                "    except Exception as error:  # sent to the parent",
                "    except ZeroDivisionError as error:  #",
            )
        ],
    ),
    (
        "README program: an exception that does not pickle sent all the same, and lost",
        README,
        [
            (
                "output.put((data[0], RuntimeError(repr(error))))",
                "output.put((data[0], error))",
            )
        ],
    ),
    (
        "README program: get() without its time limit",
        README,
        [("answers = [output.get(timeout=0.1)]", "answers = [output.get()]")],
    ),
    (
        "README program: status 0 though lookups failed",
        README,
        [("sys.exit(0 if len(results) == len(processes) else 1)", "sys.exit(0)")],
    ),
    (
        "pool program: an exception that is not named",
        README,
        [("            kind = type(error).__name__\n", "            continue\n")],
    ),
]


DIFF_TEST = "test_mp.py::test_the_readme_diff_is_the_diff_from_the_post"


def mutate(path, what, changes):
    """Make the changes in the file; in the README, only within its two programs."""
    text = path.read_text(encoding="utf-8")
    pieces = [text]
    if path.name == README:  # [before, first program, between, pool program, after]
        block = r"(?:(?<=<!-- corrected program -->\n)|(?<=<!-- pool program -->\n))"
        pieces = re.split(block + r"(```python\n.*?```\n)", text, flags=re.DOTALL)
    for old, new in changes:
        found = [
            n
            for n, piece in enumerate(pieces)
            if old in piece and (len(pieces) == 1 or n % 2)
        ]
        if len(found) != 1 or pieces[found[0]].count(old) != 1:
            raise SystemExit(f"mutant {what!r}: {old!r} is not there once")
        pieces[found[0]] = pieces[found[0]].replace(old, new)
    path.write_text("".join(pieces), encoding="utf-8")


def copy_kit(folder):
    """The kit's tracked files, as they are in the work tree, in `folder`."""
    names = (
        subprocess.run(
            ["git", "ls-files", "-z"], cwd=KIT, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(KIT / name, folder / name)


def pytest(folder, *tests):
    """Run the suite (or the named tests) in `folder`: (failed test ids, output)."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    env = {**os.environ, "MP_TEST_TIMING": "off"}
    done = subprocess.run(
        [*command, *tests],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    if done.returncode not in (0, 5) and not failed:  # it could not even collect
        failed = ["(collection)"]
    return failed, done.stdout[-2000:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="only the mutants whose description has WORD")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or args.only in m[0]]
    killed, results = 0, []
    for number, (what, name, changes) in enumerate(chosen, 1):
        started = time.monotonic()
        with (
            tempfile.TemporaryDirectory() as mutant,
            tempfile.TemporaryDirectory() as pristine,
        ):
            mutant, pristine = Path(mutant), Path(pristine)
            copy_kit(mutant)
            copy_kit(pristine)
            mutate(mutant / name, what, changes)
            skip = ["--deselect", DIFF_TEST] if name == README else []
            failed, _ = pytest(mutant, *skip)
            if not failed:
                fate = "SURVIVED"
            elif failed == ["(collection)"]:
                fate = (
                    "killed" if not pytest(pristine, "--collect-only")[0] else "unsure"
                )
            else:
                again, _ = pytest(pristine, *failed)
                fate = "killed" if not again else f"unsure: {again} fail unmutated too"
        killed += fate == "killed"
        seconds = time.monotonic() - started
        print(
            f"{number:2}. {fate:8} {what} ({name}; {', '.join(failed) or 'no test failed'};"
            f" {seconds:.0f} s)",
            flush=True,
        )
        results.append(fate)
    share = killed / len(chosen)
    print(f"\nkilled {killed} of {len(chosen)} ({share:.0%})")
    sys.exit(share < 0.9)


if __name__ == "__main__":
    main()
