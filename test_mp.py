"""Tests for mp.py and the README's programs: one test per promise the kit makes.

Most tests run `python3 mp.py` in a copy of the kit whose pets.py holds
Scripted pet names (.ci/lookups.py). Each lookup rings a Switchboard in the
test as it begins, acts on cue, and keeps its connection open until its
process ends. So a test orders events instead of waiting for them ("steve's
failure is named while adam's lookup is still held"), and sees that nothing
is left running without looking for processes. The one timing check compares
`python3 mp.py` with ten plain processes timed alone beside it, or skips.
"""

import ast
import contextlib
import difflib
import multiprocessing
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

import mp
from pets import pet_maps

KIT = Path(__file__).resolve().parent
sys.path.insert(0, str(KIT / ".ci"))  # where workers, too, find the test lookups
import lookups

NAMES = {person: entry["pet_name"] for person, entry in pet_maps.items()}
METHODS = multiprocessing.get_all_start_methods()
DEFAULT = multiprocessing.get_start_method()  # Python's own: nothing has set it yet
TIMING = os.environ.get("MP_TEST_TIMING") != "off"  # off: the timing checks skip
POSIX = os.name == "posix"
posix_only = pytest.mark.skipif(not POSIX, reason="needs POSIX signals to a group")
pytestmark = pytest.mark.timeout(60)


# Helpers: a copy of the kit, the commands run in it, and the README's blocks


def readme_block(marker):
    """The fenced block that follows the README line `<!-- marker -->`."""
    text = (KIT / "README.md").read_text(encoding="utf-8")
    fenced = text.split(f"<!-- {marker} -->\n", 1)[1].split("```", 2)[1]
    return fenced.split("\n", 1)[1]  # without the ```python line


class Lines:
    """What a command writes to one stream, line by line, stamped as it comes."""

    def __init__(self, stream):
        self.lines, self.done = [], threading.Condition()
        self.closed = False
        self.reader = threading.Thread(target=self.read, args=(stream,), daemon=True)
        self.reader.start()

    def read(self, stream):
        for line in stream:
            with self.done:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.done.notify_all()
        with self.done:
            self.closed = True
            self.done.notify_all()

    def text(self):
        with self.done:
            return [line for _, line in self.lines]

    def first(self, pattern, limit=20):
        """(when, line) for the first line that matches, once it has come."""

        def found():
            return [(at, line) for at, line in self.lines if re.search(pattern, line)]

        with self.done:
            assert self.done.wait_for(lambda: found() or self.closed, limit), pattern
            assert found(), f"no line matches {pattern!r}: {self.text()}"
            return found()[0]


class Run:
    """A command in a kit copy, in a session of its own, its output read as it comes."""

    def __init__(self, folder, args, env=None, read_out=True):
        own_group = {"start_new_session": True} if POSIX else {}
        self.process = subprocess.Popen(
            args,
            cwd=folder,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            **own_group,
        )
        self.began = time.monotonic()
        self.err = Lines(self.process.stderr)
        self.out = Lines(self.process.stdout) if read_out else None

    def wait(self):
        """Wait for it to end (the test's time limit bounds the wait)."""
        self.status = self.process.wait()
        self.seconds = time.monotonic() - self.began
        for lines in filter(None, (self.out, self.err)):
            with lines.done:
                lines.done.wait_for(lambda lines=lines: lines.closed)
        return self

    def signal(self, number, group=False):
        """Send a signal to the command, or to its whole process group."""
        if group:
            os.killpg(self.process.pid, number)
        else:
            self.process.send_signal(number)

    def kill(self):
        """Kill it and all it started; wait for its readers, so that none is left."""
        with contextlib.suppress(OSError):
            if POSIX:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.kill()
        self.process.wait()
        for lines in filter(None, (self.out, self.err)):
            lines.reader.join()


class Kit:
    """A copy of the kit in a folder of its own, with a pets.py of Scripted names."""

    def __init__(self, folder, board):
        self.folder, self.board, self.runs = folder, board, []
        for name in ("mp.py", ".ci/lookups.py"):
            shutil.copy(KIT / name, folder)
        programs = {"readme_program.py": "corrected program", "pool.py": "pool program"}
        for name, marker in programs.items():
            (folder / name).write_text(readme_block(marker), encoding="utf-8")
        self.pets()

    def pets(self, people=NAMES, **scripts):
        """Write pets.py: each person's lookup follows scripts[person], or answers."""
        source = lookups.pets_source(self.board, people, scripts)
        (self.folder / "pets.py").write_text(source, encoding="utf-8")

    def run(self, *args, env=None, read_out=True):
        """python3 ARGS, in the copy."""
        return self.command([sys.executable, *map(str, args)], env, read_out)

    def sh(self, line):
        """A POSIX shell line, in the copy, with "python3" meaning this Python."""
        return self.command(
            ["sh", "-c", line.replace("python3", f'"{sys.executable}"')]
        )

    def command(self, args, env=None, read_out=True):
        run = Run(self.folder, args, env, read_out)
        self.runs.append(run)
        return run

    def mp(self, *args):
        """python3 mp.py ARGS, with no delay unless ARGS give one."""
        return self.run("mp.py", *(["--delay", "0"] * ("--delay" not in args)), *args)

    def edit(self, program, old, new):
        """Change `old` to `new` in a program of the copy, where it appears once."""
        path = self.folder / program
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} appears {text.count(old)} times"
        path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture(scope="session", autouse=True)
def stop_signals_as_from_a_terminal():
    """Commands start with Ctrl-C and SIGHUP at their defaults, as from a terminal,
    even when pytest itself runs in a background job, which ignores them."""
    for number in mp.STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            continue
        if number == signal.SIGINT:
            signal.signal(number, signal.default_int_handler)  # Python's own
        else:
            signal.signal(number, signal.SIG_DFL)


@pytest.fixture
def board():
    switchboard = lookups.Switchboard()
    yield switchboard
    switchboard.close()


@pytest.fixture
def kit(tmp_path, board):
    """A kit copy; every command run in it is killed, whole, when the test ends."""
    copy = Kit(tmp_path, board)
    yield copy
    for run in copy.runs:
        run.kill()


@pytest.fixture
def start_method(request):
    """Python's start method set to the test's parameter for in-process runs."""
    multiprocessing.set_start_method(request.param, force=True)
    yield request.param
    multiprocessing.set_start_method(None, force=True)
    for child in multiprocessing.active_children():
        child.kill()
        child.join()


def scripted_pets(board, **scripts):
    """The post's data with Scripted pet names, for find_pet_names() in this process."""
    return {
        person: {
            "pet_name": lookups.Scripted(
                name, person, scripts.get(person, ""), board.address
            )
        }
        for person, name in NAMES.items()
    }


def post_lines(stdout, results):
    """The post's lines: "adding to queue" per lookup, then the results, once each."""
    *adding, heading, printed = stdout
    assert adding == ["adding to queue"] * len(NAMES)
    assert heading == "consuming from queue:"
    expected = [f"pet name: {NAMES[person]}" for person in results]
    assert sorted(ast.literal_eval(printed)) == sorted(expected)


def without_prefix(stderr):
    """The lines that name failures, without the "mp.py: " that mp.py puts first."""
    return sorted(line.removeprefix("mp.py: ") for line in stderr)


def others(*people):
    """Everyone in the post's data but `people`."""
    return [person for person in NAMES if person not in people]


RAISED = "steve: RuntimeError: the lookup service is down"


# The post: all ten names, in about one delay


@pytest.mark.parametrize("method", ["default", *METHODS])
def test_prints_the_posts_lines_with_every_name_once(kit, board, method):
    kit.pets(**dict.fromkeys(NAMES, "method"))
    chosen = [] if method == "default" else ["--start-method", method]
    run = kit.mp(*chosen).wait()
    assert (run.status, run.err.text()) == (0, [])
    post_lines(run.out.text(), NAMES)
    used = {board.wait(person, "method")[1][0] for person in NAMES}
    assert used == {DEFAULT if method == "default" else method}
    board.gone()  # every worker has ended: nothing is left running


@pytest.mark.parametrize("start_method", METHODS, indirect=True)
def test_the_lookups_all_wait_at_one_moment(start_method):
    # By the lookups' own clocks, which a busy machine cannot fool: every one of
    # them began before any ended, and each took the whole delay.
    delay = 0.2
    results = mp.find_pet_names(pet_maps, delay, lookups.stamped)
    assert sorted(results) == sorted(NAMES)
    began, ended, methods = zip(*results.values())
    assert max(began) < min(ended)
    assert min(end - start for start, end in zip(began, ended)) >= delay
    assert set(methods) == {start_method}
    assert multiprocessing.active_children() == []


def test_python3_mp_py_takes_one_delay_beside_ten_plain_processes(kit):
    # Timed whole, each alone, one right after the other: the kit's own run and
    # ten plain sleeping processes under the same start method. A machine too
    # busy to run the plain ones in about one delay cannot judge the kit.
    shutil.copy(KIT / "pets.py", kit.folder)
    baseline = kit.run("lookups.py", "baseline", mp.DELAY).wait()
    run = kit.run("mp.py").wait()
    assert run.status == 0
    post_lines(run.out.text(), NAMES)
    plain = float(baseline.out.text()[-1])
    print(
        f"python3 mp.py took {run.seconds:.2f} s; ten plain processes "
        f"{baseline.seconds:.2f} s ({plain:.2f} s of it sleeping)"
    )
    assert run.seconds >= mp.DELAY
    if not TIMING:
        pytest.skip("the timing checks are off (MP_TEST_TIMING=off)")
    if baseline.seconds >= 2.5 * mp.DELAY:
        pytest.skip(
            f"too busy to judge: ten plain processes took {baseline.seconds:.2f} s"
        )
    assert run.seconds < baseline.seconds + mp.DELAY / 2


# Fix 2: every result read before any join


@pytest.mark.parametrize("method", ["default", "spawn"])
def test_megabyte_results_come_back_whole(kit, board, method):
    kit.pets(**dict.fromkeys(NAMES, "big"))
    chosen = [] if method == "default" else ["--start-method", method]
    run = kit.mp(*chosen).wait()
    assert run.status == 0
    *_, printed = run.out.text()
    results = ast.literal_eval(printed)
    assert [len(result) for result in results] == [len("pet name: ") + 10**6] * 10
    board.gone()


# Failures: each named as it happens, while the others go on


@pytest.mark.parametrize("method", METHODS)
def test_a_raised_exception_is_named_while_the_others_go_on(kit, board, method):
    kit.pets(steve="raise", adam="hold")
    run = kit.mp("--start-method", method)
    raised_at = board.wait("steve")[0]
    named_at, _ = run.err.first("steve")  # adam's lookup is held until it comes
    board.go("adam")
    run.wait()
    print(f"{method}: steve named {named_at - raised_at:.3f} s after his lookup raised")
    assert run.status == 1
    assert run.err.text() == [f"mp.py: {RAISED}"]  # one line, no traceback
    post_lines(run.out.text(), others("steve"))
    board.gone()


UNPICKLABLE = {  # how steve's lookup fails: what mp.py then says of it
    "unpicklable": "RuntimeError: RuntimeError('the lookup service is down')",
    "unloadable": "RuntimeError: ServiceDown('the pets service answered 503')",
}


@pytest.mark.parametrize("how", UNPICKLABLE)
def test_an_exception_that_cannot_travel_is_named_by_its_repr(kit, board, how):
    kit.pets(steve=how)
    run = kit.mp().wait()
    assert (run.status, run.err.text()) == (1, [f"mp.py: steve: {UNPICKLABLE[how]}"])
    post_lines(run.out.text(), others("steve"))
    board.gone()


def test_a_worker_that_ends_without_a_result_is_named_with_its_exit_code(kit, board):
    killed = {"will": "kill"} if POSIX else {}
    kit.pets(michelle="exit", adam="hold", **killed)
    run = kit.mp()
    run.err.first("michelle")  # adam's lookup is held until both are named
    if POSIX:
        run.err.first("will")
    board.go("adam")
    run.wait()
    expected = ["michelle: ChildProcessError: exit code 3"]
    if POSIX:
        expected.append(f"will: ChildProcessError: exit code -{signal.SIGKILL}")
    assert (run.status, without_prefix(run.err.text())) == (1, sorted(expected))
    post_lines(run.out.text(), others("michelle", *killed))
    board.gone()


@pytest.mark.parametrize("start_method", ["spawn"], indirect=True)
def test_find_pet_names_names_failures_only_through_its_caller(
    board, capfd, start_method
):
    # spawn: forking a process that runs the Switchboard's threads is unsafe.
    scripted = scripted_pets(board, steve="raise", michelle="exit")
    heard = []
    with pytest.raises(mp.PetLookupError) as raised:
        mp.find_pet_names(
            scripted, 0, on_failure=lambda *failure: heard.append(failure)
        )
    error = raised.value
    assert sorted(person for person, _ in heard) == ["michelle", "steve"]
    assert error.failures == dict(heard)
    assert isinstance(error.failures["steve"], RuntimeError)
    assert str(error.failures["steve"]) == "the lookup service is down"
    assert isinstance(error.failures["michelle"], ChildProcessError)
    assert "steve" in str(error) and "michelle" in str(error)
    assert sorted(error.results) == sorted(others("steve", "michelle"))
    assert capfd.readouterr().err == ""  # it named no failure itself
    assert multiprocessing.active_children() == []


# --timeout: the stragglers named, the others kept, one second of grace in all


def test_timeout_names_each_straggler_and_keeps_the_others(kit, board):
    kit.pets(adam="hang", steve="stubborn; hang")
    run = kit.mp("--timeout", 0.3)
    board.wait("steve", "sigterm")  # terminate() came, and was ignored: kill() next
    run.wait()
    assert run.status == 1
    assert without_prefix(run.err.text()) == [
        "adam: TimeoutError: after 0.3 s",
        "steve: TimeoutError: after 0.3 s",
    ]
    post_lines(run.out.text(), others("adam", "steve"))
    board.gone()
    sigterm = board.wait("steve", "sigterm")[0]
    print(
        f"the stubborn worker ended {board.ended['steve'] - sigterm:.2f} s after SIGTERM"
    )


@pytest.fixture
def slow_starts(monkeypatch):
    """Each worker's start takes 0.2 s more: its lookup is under way by then."""
    real_start = multiprocessing.Process.start

    def slow_start(process):
        real_start(process)
        time.sleep(0.2)

    monkeypatch.setattr(multiprocessing.Process, "start", slow_start)


@pytest.mark.usefixtures("slow_starts")
def test_the_timeout_counts_from_when_the_workers_have_started():
    # Every lookup answers at once, so all three results are in before the last
    # worker has started. A clock that began before the first start would have
    # run out by then.
    three = dict(list(pet_maps.items())[:3])
    results = mp.find_pet_names(three, 0, lookups.stamped, timeout=0.3)
    assert sorted(results) == sorted(three)


def test_a_timeout_of_zero_leaves_no_lookup_running(kit, board):
    kit.pets(**dict.fromkeys(NAMES, "hold"))
    run = kit.mp("--timeout", 0).wait()
    assert run.status == 1
    expected = [f"{person}: TimeoutError: after 0 s" for person in NAMES]
    assert without_prefix(run.err.text()) == sorted(expected)
    board.gone()


class StubbornProcess:
    """A worker that ignores terminate(): join(timeout) takes the whole timeout."""

    pid = 1

    def __init__(self, clock):
        self.clock, self.alive, self.calls = clock, True, []

    def terminate(self):
        self.calls.append("terminate")

    def join(self, timeout=None):
        self.calls.append("join")
        if self.alive:
            self.clock.now += timeout or 0

    def kill(self):
        self.calls.append("kill")
        self.alive = False


class Clock:
    now = 0.0

    def monotonic(self):
        return self.now


def test_stragglers_get_one_second_of_grace_in_all(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(mp.time, "monotonic", clock.monotonic)
    stubborn = [StubbornProcess(clock) for _ in range(3)]
    mp.stop(stubborn)
    assert clock.now == pytest.approx(1)  # not one second for each of the three
    for process in stubborn:
        assert process.calls[0] == "terminate"
        assert "kill" in process.calls and not process.alive


@pytest.mark.usefixtures("slow_starts")
def test_a_worker_that_died_is_named_as_dead_even_when_time_has_run_out():
    # Both workers have died before the clock starts, and it allows no time at
    # all: still, each is named for how its lookup ended.
    two = {"adam": pet_maps["adam"], "steve": pet_maps["steve"]}
    heard = []
    with pytest.raises(mp.PetLookupError):
        mp.find_pet_names(
            two, 0, lookups.exits, 0, lambda *failure: heard.append(failure)
        )
    assert [(person, type(error)) for person, error in heard] == [
        ("adam", ChildProcessError),
        ("steve", ChildProcessError),
    ]


# Stop signals: one line, 128 + the signal's number, and nothing left running


STOPS = {  # how each signal comes, and the start methods it is tried under
    "ctrl-c-to-the-job": ("SIGINT", True, METHODS),
    "sigterm-to-the-parent-alone": ("SIGTERM", False, ["default"]),
    # A hang-up to the job ends multiprocessing's helpers too, under spawn and
    # forkserver, and they have their own say as the run ends.
    "sighup-to-the-job": ("SIGHUP", True, METHODS),
}


@posix_only
@pytest.mark.parametrize(
    ("name", "group", "method"),
    [
        (name, group, method)
        for name, group, methods in STOPS.values()
        for method in methods
    ],
    ids=[
        f"{how}-{method}"
        for how, (_, _, methods) in STOPS.items()
        for method in methods
    ],
)
def test_a_stop_signal_ends_the_run_with_one_line(kit, board, method, name, group):
    kit.pets(**dict.fromkeys(NAMES, "hold"))
    run = kit.mp(*([] if method == "default" else ["--start-method", method]))
    for person in NAMES:
        board.wait(person)  # every lookup under way
    number = getattr(signal, name)
    run.signal(number, group=group)
    run.wait()
    assert (run.status, run.err.text()) == (128 + number, [f"mp.py: stopped by {name}"])
    assert run.out.text() == ["adding to queue"] * 10
    board.gone()


@posix_only
def test_ctrl_c_while_spawn_workers_start_is_not_lost(kit, board):
    # Thirty people; the start of the twelfth worker is held, in the parent,
    # while its pet name is pickled, until the test has pressed Ctrl-C.
    thirty = {f"{person}{n}": name for n in range(3) for person, name in NAMES.items()}
    kit.pets(thirty, **{**dict.fromkeys(thirty, "hold"), "steve1": "hold; starting"})
    run = kit.mp("--start-method", "spawn")
    board.wait("steve1:starting")  # eleven workers started, nineteen not
    run.signal(signal.SIGINT, group=True)
    run.wait()
    print(
        f"Ctrl-C as the twelfth of 30 spawn workers started; {run.seconds:.2f} s in all"
    )
    assert run.status == 130
    # Workers still starting may print Python's own start-up errors, a part of a
    # line at a time, so mp.py's line may come in the middle of one of theirs.
    assert "mp.py: stopped by SIGINT\n" in "\n".join(run.err.text()) + "\n"
    board.gone()
    assert not set(board.said) & {
        f"{person}2" for person in NAMES
    }  # the rest never began


@posix_only
def test_a_second_ctrl_c_during_the_clean_up_leaves_no_worker_running(kit, board):
    kit.pets(adam="stubborn; hang")
    run = kit.mp("--timeout", 0.3)
    board.wait("adam", "sigterm")  # the clean-up's second of grace has begun
    run.signal(signal.SIGINT)
    run.wait()
    assert run.status == 130
    assert run.err.text()[-1] == "mp.py: stopped by SIGINT"
    board.gone()  # the stubborn worker was killed all the same


@pytest.mark.parametrize("start_method", METHODS, indirect=True)
def test_workers_leave_ctrl_c_to_the_parent_and_end_on_sigterm(start_method):
    # Under forkserver, twice: the second run's workers come from a fork server
    # that is already running, with the handlers it started with.
    for _ in range(2 if start_method == "forkserver" else 1):
        results = mp.find_pet_names(pet_maps, 0, lookups.signals)
        assert set(results.values()) == {(True, True)}


@posix_only
def test_the_stop_handler_does_nothing_in_a_worker_that_fork_copied_it_into(
    monkeypatch, capfd
):
    # Between fork() and a worker's first line, the worker has the parent's
    # handler: there a Ctrl-C must neither print nor end the worker.
    statuses = []

    def fork_and_press_ctrl_c(*args):
        handler = signal.getsignal(signal.SIGINT)
        child = os.fork()
        if child == 0:
            try:
                handler(signal.SIGINT, None)
            except SystemExit:
                os._exit(1)
            os._exit(0)
        statuses.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        return {}

    monkeypatch.setattr(mp, "find_pet_names", fork_and_press_ctrl_c)
    handlers = {number: signal.getsignal(number) for number in mp.STOP_SIGNALS}
    try:
        assert mp.main([]) == 0
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    assert statuses == [0]
    assert capfd.readouterr().err == ""


@posix_only
def test_a_hangup_ignored_from_the_start_stays_ignored_as_nohup_asks(kit, board):
    kit.pets(adam="hold")
    run = kit.sh('trap "" HUP; exec python3 mp.py --delay 0')
    board.wait("adam")
    run.signal(signal.SIGHUP, group=True)
    board.go("adam")
    run.wait()
    assert (run.status, run.err.text()) == (0, [])
    post_lines(run.out.text(), NAMES)


# Lines whole, a reader who leaves, and bad input


class Writes(list):
    """A stream that keeps each write() apart."""

    def write(self, text):
        self.append(text)

    def flush(self):
        pass


def test_each_line_is_written_whole_in_one_write():
    stream = Writes()
    mp.print_line("adding to queue", stream)
    assert [text for text in stream if text] == ["adding to queue\n"]


def test_lines_stay_whole_when_ten_workers_write_unbuffered(kit):
    run = kit.run("mp.py", "--delay", "0", env={"PYTHONUNBUFFERED": "1"}).wait()
    assert run.status == 0
    post_lines(run.out.text(), NAMES)


def test_a_reader_who_leaves_early_gets_a_quiet_end(kit, board):
    # As `python3 mp.py | head -1` does: the pipe closes after the first line.
    kit.pets(adam="hold")
    run = kit.run("mp.py", "--delay", "0", read_out=False)
    assert run.process.stdout.readline() == "adding to queue\n"
    run.process.stdout.close()  # as `| head -1` does once it has its line
    board.go("adam")  # whose line, and the results, now meet a closed pipe
    run.wait()
    assert run.err.text() == []  # no BrokenPipeError, no "Exception ignored"
    board.gone()


MALFORMED = {
    "an entry that is no mapping": "'sylvester'",
    "an entry without a pet_name": "{'name': 'sylvester'}",
    "a pet_name that is no string": "{'pet_name': None}",
}


@pytest.mark.parametrize(
    "entry", MALFORMED.values(), ids=[what.replace(" ", "-") for what in MALFORMED]
)
def test_a_malformed_pets_entry_is_named_before_anything_starts(kit, board, entry):
    source = (kit.folder / "pets.py").read_text(encoding="utf-8")
    steve = re.search(r"'steve': .*,\n", source)[0]
    (kit.folder / "pets.py").write_text(source.replace(steve, f"'steve': {entry},\n"))
    run = kit.mp().wait()
    assert run.status == 1
    assert run.err.text() == [
        f"mp.py: error: pet_maps['steve'] has no 'pet_name' string: {ast.literal_eval(entry)!r}"
    ]
    assert board.said == {}  # no lookup began


BAD_OPTIONS = [
    ["--delay", "inf"],
    ["--delay", "-1"],
    ["--delay", "nan"],
    ["--delay", "soon"],
    ["--timeout", "-0.5"],
    ["--timeout", "inf"],
    ["--start-method", "thread"],
    ["--work", "gpu"],
]


@pytest.mark.parametrize("options", BAD_OPTIONS, ids="=".join)
def test_bad_options_are_refused_before_anything_starts(kit, board, options):
    run = kit.run("mp.py", *options).wait()
    assert run.status == 2
    *_, error = run.err.text()
    assert error.startswith("mp.py: error: ")
    assert options[0] in error
    assert board.said == {}


@pytest.mark.parametrize("method", METHODS)
def test_a_pets_py_with_a_class_of_its_own(kit, method):
    (kit.folder / "pets.py").write_text(
        "class PetName(str):\n"
        "    def __format__(self, spec):\n"
        "        return str(self).upper()\n\n"
        f"pet_maps = {{person: {{'pet_name': PetName(name)}} for person, name in {NAMES!r}.items()}}\n",
        encoding="utf-8",
    )
    run = kit.mp("--start-method", method).wait()
    assert run.status == 0
    results = ast.literal_eval(run.out.text()[-1])
    assert sorted(results) == sorted(
        f"pet name: {name.upper()}" for name in NAMES.values()
    )


# Waiting against computing


def test_work_cpu_makes_every_lookup_compute_for_the_delay(kit, board):
    kit.pets(**dict.fromkeys(NAMES, "cputime"))
    run = kit.mp("--work", "cpu", "--delay", "0.3").wait()
    assert run.status == 0
    post_lines(run.out.text(), NAMES)
    for person in NAMES:  # each worker's own CPU time as it formats the name
        assert float(board.wait(person, "cputime")[1][0]) >= 0.3
    board.gone()


def test_a_computing_lookup_computes_in_place_of_the_wait(monkeypatch):
    slept = []
    monkeypatch.setattr(mp.time, "sleep", slept.append)
    output = queue.Queue()
    started = time.process_time()
    mp.compute_pet_name(("adam", "max"), output, 0.1)
    assert time.process_time() - started >= 0.1
    assert sum(slept) == 0  # it does not wait as well
    assert output.get_nowait() == ("adam", "pet name: max")


def test_lookups_that_compute_use_more_than_one_core():
    # mp.py --work cpu's lookups, against ten plain processes that compute the
    # same, timed alone one after the other: the kit's spreads as well.
    cores = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    if cores < 2:
        pytest.skip("one core: nothing to spread the lookups over")
    work = 0.1
    plain = lookups.baseline(lookups.spin, work)
    started = time.monotonic()
    results = mp.find_pet_names(pet_maps, work, mp.compute_pet_name)
    kit = time.monotonic() - started
    print(
        f"10 x {work} s of computing: find_pet_names() {kit:.2f} s, "
        f"plain processes {plain:.2f} s, one after another {10 * work:.2f} s"
    )
    assert sorted(results.values()) == sorted(f"pet name: {n}" for n in NAMES.values())
    if not TIMING:
        pytest.skip("the timing checks are off (MP_TEST_TIMING=off)")
    if plain > 10 * work * 0.75:
        pytest.skip(f"too busy to judge: plain processes took {plain:.2f} s")
    assert kit < (plain + 10 * work) / 2  # nearer the plain processes than a queue


# The README's programs, its diff and its pitfalls


def apply_readme_diff(program, marker):
    """The program with the README's changes under `<!-- marker -->` made to it.

    The block holds hunks split by "...": lines marked " " and "-" are found
    in the program, once, and become those marked " " and "+".
    """
    for hunk in readme_block(marker).split("...\n"):
        lines = hunk.splitlines(keepends=True)
        before = "".join(line[1:] for line in lines if line[0] in " -")
        after = "".join(line[1:] for line in lines if line[0] in " +")
        assert program.count(before) == 1, before
        program = program.replace(before, after)
    return program


def test_the_readme_program_and_mp_py_name_the_same_failures(kit, board):
    kit.pets(steve="raise", michelle="exit", will="unpicklable", adam="hold")
    kit.edit("readme_program.py", "time.sleep(2)", "time.sleep(0)")
    expected = [
        "michelle: ChildProcessError: exit code 3",
        RAISED,
        f"will: {UNPICKLABLE['unpicklable']}",
    ]
    for program in ("mp.py", "readme_program.py"):
        run = kit.run(program, *(["--delay", "0"] if program == "mp.py" else []))
        for person in ("michelle", "steve", "will"):
            run.err.first(person)  # each named while adam's lookup is held
        board.go("adam")
        run.wait()
        board.gone()
        assert (run.status, without_prefix(run.err.text())) == (1, expected), program
        post_lines(run.out.text(), others("steve", "michelle", "will"))
        board.said.clear()


def test_the_readme_program_as_saved_names_a_raised_exception(kit, board):
    kit.pets(steve="raise")
    run = kit.run("readme_program.py").wait()
    assert (run.status, run.err.text()) == (1, [RAISED])
    post_lines(run.out.text(), others("steve"))
    board.gone()


@posix_only
def test_ctrl_c_stops_the_readme_program_with_no_traceback_from_a_worker(kit, board):
    kit.pets(adam="signals; hang")
    kit.edit("readme_program.py", "time.sleep(2)", "time.sleep(0)")
    run = kit.run("readme_program.py")
    board.gone(others("adam"))  # the nine others have answered; adam's never will
    assert board.wait("adam", "signals")[1][0] == "1"  # his worker ignores Ctrl-C
    pressed = time.monotonic()
    run.signal(signal.SIGINT, group=True)
    run.wait()
    print(f"the run ended {time.monotonic() - pressed:.2f} s after Ctrl-C")
    board.gone()
    assert "KeyboardInterrupt" in run.err.text()  # the parent's own traceback
    assert not [line for line in run.err.text() if line.startswith("Process ")]


def test_the_readme_diff_is_the_diff_from_the_post():
    post = (KIT / ".ci/post.txt").read_text(encoding="utf-8")
    data = re.search(r"pet_maps = {.*?\n    }\n", post, re.DOTALL)[0]
    post = post.replace(data, "from pets import pet_maps\n")  # as the README says
    program = readme_block("corrected program")
    diff = difflib.unified_diff(
        post.splitlines(keepends=True),
        program.splitlines(keepends=True),
        "the post",
        "corrected",
    )
    assert readme_block("corrected diff") == "".join(diff)


def test_the_readme_program_fits_in_sixty_lines_of_88_columns():
    lines = readme_block("corrected program").splitlines()
    assert len(lines) <= 60
    assert max(map(len, lines)) <= 88


@pytest.mark.parametrize("pitfall", [1, 2])
def test_the_readme_pitfalls_that_hang_still_hang(kit, board, pitfall):
    # Pitfall 1 joins workers that cannot end until their results are read;
    # pitfall 2 waits for a result from a worker that died. Once every lookup
    # is over, such a run has nothing left to do; 0.3 s on, it still runs.
    program = apply_readme_diff(readme_block("corrected program"), f"pitfall {pitfall}")
    (kit.folder / "pitfall.py").write_text(
        program.replace("time.sleep(2)", "time.sleep(0)")
    )
    run = kit.run("pitfall.py")
    for person in others("adam") if pitfall == 2 else NAMES:
        board.wait(person)
    if pitfall == 2:
        board.gone()  # nine answered, and adam's worker died before it rang
    run.out.first("adding to queue")
    with pytest.raises(subprocess.TimeoutExpired):
        run.process.wait(0.3)
    assert "consuming from queue:" not in run.out.text()


def test_the_readme_pitfall_of_starting_on_import_is_named(kit, board):
    program = apply_readme_diff(readme_block("corrected program"), "pitfall 3")
    (kit.folder / "pitfall.py").write_text(
        program.replace("time.sleep(2)", "time.sleep(0)")
    )
    run = kit.run("pitfall.py").wait()
    assert run.status == 1
    text = "\n".join(run.err.text())
    assert "bootstrapping phase" in text  # each worker's RuntimeError
    assert text.count("ChildProcessError: exit code 1") == len(NAMES)
    assert board.said == {}


def test_the_pool_program_prints_every_name(kit, board):
    assert len(readme_block("pool program").splitlines()) <= 25
    kit.edit("pool.py", "time.sleep(2)", "time.sleep(0)")
    run = kit.run("pool.py").wait()
    assert (run.status, run.err.text()) == (0, [])
    assert sorted(ast.literal_eval(run.out.text()[-1])) == sorted(
        f"pet name: {n}" for n in NAMES.values()
    )
    board.gone()


def test_the_pool_program_names_the_lookups_own_exception(kit, board):
    kit.pets(steve="raise")
    kit.edit("pool.py", "time.sleep(2)", "time.sleep(0)")
    run = kit.run("pool.py").wait()
    assert (run.status, run.err.text()) == (1, [RAISED])
    board.gone()


def test_the_timeline_command_draws_one_bar_per_lookup(tmp_path):
    command = readme_block("timeline command").split()
    assert command[:2] == ["python3", ".ci/timeline.py"]
    picture = tmp_path / "timeline.svg"
    subprocess.run(
        [sys.executable, KIT / command[1], picture, "--delay", "0.1"],
        check=True,
        capture_output=True,
    )
    svg = ElementTree.parse(picture).getroot()
    bars = svg.findall(".//{http://www.w3.org/2000/svg}rect[@class='bar']")
    people = [
        bar.find("{http://www.w3.org/2000/svg}title").text.split(":")[0] for bar in bars
    ]
    assert people == [*NAMES, *NAMES]  # the post's run, then the failing one
    assert f"docs/{command[2].split('/')[-1]}" in (KIT / "README.md").read_text()


# The suite itself runs where the post runs


def test_the_suite_collects_without_posix_only_modules():
    blocked = "import sys; sys.modules.update(dict.fromkeys(['resource', 'fcntl', 'termios']))"
    collect = f"{blocked}; import pytest; sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider']))"
    result = subprocess.run(
        [sys.executable, "-c", collect],
        check=False,
        cwd=KIT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\d+ tests collected", result.stdout, re.MULTILINE), (
        result.stdout
    )
