"""Tests for mp.py: every pet name comes back once, in about one delay, under every start method.

The failure tests check that no lookup, signal or limit can hang the run, lose
a result, print a traceback or leave a process behind. A bug in this kit
usually shows up as a hang, so every test has a time limit (pytest-timeout).
The speedups that the timed tests measure are printed at the end of the run.
"""

import ast
import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import pytest_timeout  # noqa: F401  (without it the time limits below would be ignored)

import mp
from pets import pet_maps

HERE = Path(__file__).resolve().parent
START_METHODS = multiprocessing.get_all_start_methods()
EXPECTED = collections.Counter(
    f"pet name: {entry['pet_name']}" for entry in pet_maps.values()
)
# Spawn and forkserver children start a fresh interpreter, and import this file
# (and pytest with it) to run the lookups defined here: tests where the number
# of workers is not the point use fewer of them.
THREE = {person: pet_maps[person] for person in ("adam", "steve", "michelle")}
ONE = {"steve": pet_maps["steve"]}
LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads process details from /proc"
)

pytestmark = pytest.mark.timeout(10)


# Lookups the tests pass to find_pet_names(). They live at module level so that
# spawn and forkserver children can import them.


def put_start_method(person: str, pet_name: str, output, delay: float) -> None:
    """Answer with the start method that made this process, read from its command line."""
    cmdline = Path("/proc/self/cmdline").read_bytes()
    started_by = [
        m for m in ("forkserver", "spawn") if f"multiprocessing.{m}".encode() in cmdline
    ]
    output.put((person, started_by[0] if started_by else "fork"))


def return_without_result(person: str, pet_name: str, output, delay: float) -> None:
    """Exit cleanly without putting anything on the queue."""


WAIT_FOR = {"adam": 0.4, "steve": 0.2, "michelle": 0.0}  # so results arrive in reverse


def wait_in_reverse(person: str, pet_name: str, output, delay: float) -> None:
    """The real lookup, but adam's takes longest and michelle's no time at all."""
    mp.get_pet_name(person, pet_name, output, WAIT_FOR[person])


@dataclasses.dataclass
class FailingLookup:
    """The real lookup for everyone but Steve, whose lookup fails in the way `how` says.

    Just before failing it writes the time (time.monotonic(), which is the same
    clock in every process on Linux) to `stamp`, so a test can tell how long the
    run took to notice.
    """

    how: str  # "raise", "exit" or "kill"
    stamp: Path

    def __call__(self, person: str, pet_name: str, output, delay: float) -> None:
        if person != "steve":
            return mp.get_pet_name(person, pet_name, output, delay)
        self.stamp.write_text(repr(time.monotonic()))
        if self.how == "raise":
            raise LookupError("no record of sylvester")
        if self.how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)


@dataclasses.dataclass
class StuckLookup:
    """Steve's lookup ignores SIGTERM and never ends; then something stops the run.

    `then` is what stops it: "timeout" (the run's time limit), "error" (Adam's
    lookup fails), "ctrl-c" or "sigterm" (sent to the parent). The time Steve's
    lookup got stuck goes to `stamp`.
    """

    then: str
    stamp: Path

    def __call__(self, person: str, pet_name: str, output, delay: float) -> None:
        if person == "adam":  # fails once Steve is stuck
            while not self.stamp.exists():
                time.sleep(0.01)  # polling for a state, not waiting out a race
            raise LookupError("adam failed")
        parent = multiprocessing.parent_process().pid
        if self.then == "ctrl-c twice":
            # The parent's SIGTERM means it is cleaning up: press Ctrl-C again.
            signal.signal(signal.SIGTERM, lambda *_: os.kill(parent, signal.SIGINT))
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.stamp.write_text(repr(time.monotonic()))
        if self.then.startswith("ctrl-c"):
            os.kill(parent, signal.SIGINT)
        if self.then == "sigterm":
            os.kill(parent, signal.SIGTERM)
        time.sleep(3600)


# Helpers


class SpeedupReport:
    """Collects the speedups that tests measure and prints them after the test run."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.lines:
            terminalreporter.section("speedups measured by the timed tests")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def speedups(pytestconfig) -> list[str]:
    """A list whose lines pytest prints at the end, passed or failed."""
    report = SpeedupReport()
    pytestconfig.pluginmanager.register(report, "mp-speedups")
    return report.lines


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_as_in_a_terminal():
    """Let Ctrl-C through, as a terminal does, even when the suite runs in the background.

    A shell starts a background job with SIGINT ignored, and every process the
    tests start would inherit that, so that no Ctrl-C test could work.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    """Whatever a test does, no worker it started outlives it."""
    yield
    for child in multiprocessing.active_children():
        child.kill()
        child.join()


@contextlib.contextmanager
def sigterm_exits():
    """Within the block, SIGTERM to this process does what it does in mp.main()."""
    previous = signal.signal(signal.SIGTERM, mp.exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def forbid_process_start(monkeypatch):
    """Make any attempt to start a process fail the test."""

    def start(self):
        pytest.fail(f"a process was started: {self}")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)


def assert_posts_lines(stdout: str) -> list[str]:
    """Ten 'adding to queue', then 'consuming from queue:', then the list of all ten results.

    Returns the lines after those twelve.
    """
    lines = stdout.splitlines()
    assert lines[:11] == ["adding to queue"] * 10 + ["consuming from queue:"], stdout
    assert collections.Counter(ast.literal_eval(lines[11])) == EXPECTED
    return lines[12:]


def run_script(
    args: list[str], stdout_to: str = "pipe", env: dict | None = None, cwd=HERE
):
    """Run `python mp.py ARGS` with stdout going to a pipe, a file or a terminal.

    Returns (exit status, stdout, stderr).
    """
    command = [sys.executable, "mp.py", *args]
    if stdout_to in ("pipe", "file"):
        with tempfile.TemporaryFile("w+") as file:
            done = subprocess.run(
                command,
                check=False,
                cwd=cwd,
                env=env,
                stdout=file if stdout_to == "file" else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=9,
            )
            file.seek(0)
            stdout = file.read() if stdout_to == "file" else done.stdout
        return done.returncode, stdout, done.stderr
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=terminal, stderr=subprocess.PIPE, text=True
    ) as process:
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(controller)
        stderr = process.stderr.read()
    return process.returncode, b"".join(chunks).decode(), stderr


def run_program(program: str, *args: str, **run) -> subprocess.CompletedProcess:
    """Run `python -c PROGRAM ARGS` in the kit's folder; stdout and stderr as text."""
    run = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **run}
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        check=False,
        cwd=HERE,
        text=True,
        timeout=9,
        **run,
    )


def side_by_side(*calls):
    """Run independent scenarios at the same time; return their results in order."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def group_processes(group: int) -> dict[int, dict]:
    """The live processes in a process group: pid -> its parent, command line and ignored signals."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process has just exited
            continue
        state, parent, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) != group or state == "Z":
            continue
        ignored = next(
            line for line in status.splitlines() if line.startswith("SigIgn:")
        )
        found[int(entry.name)] = {
            "parent": int(parent),
            "cmdline": cmdline,
            "ignores_sigint": bool(
                int(ignored.split()[1], 16) & (1 << (signal.SIGINT - 1))
            ),
        }
    return found


def workers_of(leader: int) -> tuple[list[int], dict]:
    """The script's workers that have set up their signals, and its whole group.

    Workers are the processes in the leader's group apart from the leader and
    multiprocessing's helpers (the resource tracker and the fork server).
    """
    processes = group_processes(leader)
    workers = [
        pid
        for pid, process in processes.items()
        if pid != leader
        and process["ignores_sigint"]
        and not (
            process["parent"] == leader
            and (
                b"resource_tracker" in process["cmdline"]
                or b"forkserver" in process["cmdline"]
            )
        )
    ]
    return workers, processes


def wait_for(condition, what: str, within: float = 8):
    """Poll until condition() returns something true; return it, or fail naming `what`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.005)  # polling for a state, not waiting out a race
    pytest.fail(f"{what} did not happen within {within} s")


def wait_until_group_is_empty(group: int, within: float) -> dict[int, dict]:
    """Wait up to `within` seconds for every process in the group to exit; return any left."""
    deadline = time.monotonic() + within
    while (left := group_processes(group)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


@contextlib.contextmanager
def script_group(args: list[str], cwd=HERE, **popen):
    """Run `python mp.py ARGS` leading a process group of its own, as a terminal runs it.

    Whatever happens in the block, the whole group is killed when it ends, so a
    failing test leaves no process behind.
    """
    command = [sys.executable, "mp.py", *args]
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    with subprocess.Popen(
        command, cwd=cwd, text=True, start_new_session=True, **popen
    ) as script:
        try:
            yield script
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(script.pid, signal.SIGKILL)


@dataclasses.dataclass
class Outcome:
    """What became of a script that a test interrupted."""

    status: int
    took: float  # seconds from the interruption to the script's exit
    left: dict  # processes of its group still running `within` seconds later
    stdout: str
    stderr: str


def interrupt_script(
    start_method: str, interrupt, when="workers", within: float = 1.0
) -> Outcome:
    """Run `mp.py --delay 60` and interrupt it.

    `when` is "workers" (once its ten workers are up and ignore Ctrl-C) or a
    number of seconds after its first child process appeared, while the workers
    are still starting. interrupt(script's pid, workers' pids) does it.
    """
    args = ["--delay", "60", "--start-method", start_method]
    with script_group(args) as script:
        if when == "workers":
            workers = wait_for(
                lambda: (w := workers_of(script.pid)[0]) and len(w) == 10 and w,
                "ten workers starting",
            )
        else:
            wait_for(lambda: len(group_processes(script.pid)) > 1, "a first child")
            time.sleep(when)  # the instant under test
            workers = []
        interrupted = time.monotonic()
        interrupt(script.pid, workers)
        status = script.wait(timeout=5)
        took = time.monotonic() - interrupted
        left = wait_until_group_is_empty(script.pid, within=within)
        stdout, stderr = script.communicate(timeout=5)
    return Outcome(status, took, left, stdout, stderr)


# The data and the normal run


def test_pets_holds_the_posts_data():
    assert pet_maps == {
        "adam": {"pet_name": "max"},
        "steve": {"pet_name": "sylvester"},
        "michelle": {"pet_name": "fuzzy"},
        "frank": {"pet_name": "pete"},
        "will": {"pet_name": "cat"},
        "natasha": {"pet_name": "tweety"},
        "samantha": {"pet_name": "bob"},
        "peter": {"pet_name": "garfield"},
        "susan": {"pet_name": "zazu"},
        "josh": {"pet_name": "tom"},
    }


@pytest.mark.timeout(15)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_all_ten_names_come_back_once_in_about_one_delay(start_method, speedups):
    started = time.monotonic()
    results = mp.find_pet_names(pet_maps, delay=mp.DELAY, start_method=start_method)
    elapsed = time.monotonic() - started
    speedup = len(pet_maps) * mp.DELAY / elapsed
    report = (
        f"sleep, {start_method}: {len(pet_maps)} lookups of {mp.DELAY} s "
        f"in {elapsed:.2f} s, {speedup:.1f}x speedup (at most {len(pet_maps)}x)"
    )
    speedups.append(report)
    assert collections.Counter(results) == EXPECTED
    # Run one by one they take 10 delays, in two batches 2 delays: both fail here.
    assert mp.DELAY <= elapsed < 1.75 * mp.DELAY, report


@pytest.mark.skipif(mp.usable_cores() < 2, reason="needs at least 2 usable cores")
def test_cpu_work_runs_in_parallel_up_to_the_core_count(speedups):
    people = dict(list(pet_maps.items())[:4])
    delay = 0.5
    cores = min(mp.usable_cores(), len(people))
    before = os.times()
    started = time.monotonic()
    results = mp.find_pet_names(people, delay, lookup=mp.compute_pet_name)
    elapsed = time.monotonic() - started
    after = os.times()
    cpu = sum(after[i] - before[i] for i in range(4))  # user + sys, workers included
    work = len(people) * delay
    report = (
        f"cpu, default start method: {len(people)} lookups of {delay} s of CPU "
        f"in {elapsed:.2f} s, {work / elapsed:.1f}x speedup (at most {cores}x, "
        f"the usable cores); CPU time {cpu:.2f} s"
    )
    speedups.append(report)
    assert sorted(results) == sorted(
        f"pet name: {e['pet_name']}" for e in people.values()
    )
    assert cpu >= 0.9 * work, report  # the lookups really computed
    assert elapsed <= work / 1.5, report  # at least 1.5x faster than one after another
    assert elapsed >= 0.99 * work / cores, report  # never faster than the cores allow


@LINUX_ONLY
@pytest.mark.parametrize("start_method", START_METHODS)
def test_workers_use_the_start_method_asked_for(start_method):
    results = mp.find_pet_names(ONE, 0, start_method, lookup=put_start_method)
    assert results == [start_method]


@LINUX_ONLY
@pytest.mark.parametrize("start_method", START_METHODS)
def test_default_start_method_is_the_one_the_program_set(start_method):
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(start_method, force=True)
    try:
        results = mp.find_pet_names(ONE, 0, lookup=put_start_method)
    finally:
        multiprocessing.set_start_method(previous, force=True)
    assert results == [start_method]


def test_results_come_in_the_order_they_arrive_with_their_times():
    times = {}
    results = mp.find_pet_names(THREE, 0, "fork", lookup=wait_in_reverse, times=times)
    assert results == ["pet name: fuzzy", "pet name: sylvester", "pet name: max"]
    assert list(times) == ["michelle", "steve", "adam"]
    for person, (started, arrived) in times.items():
        assert WAIT_FOR[person] <= arrived - started < WAIT_FOR[person] + 0.15


def test_two_people_with_the_same_pet_get_a_result_each():
    same_pet = {"adam": {"pet_name": "max"}, "eve": {"pet_name": "max"}}
    assert mp.find_pet_names(same_pet, 0, "fork") == ["pet name: max"] * 2


@pytest.mark.timeout(15)
def test_python3_mp_py_prints_the_posts_lines():
    started = time.monotonic()
    status, stdout, stderr = run_script([])
    elapsed = time.monotonic() - started
    assert (status, stderr) == (0, "")
    assert assert_posts_lines(stdout) == []
    assert mp.DELAY <= elapsed < 1.75 * mp.DELAY


@pytest.mark.parametrize("start_method", START_METHODS)
def test_command_line_start_method_and_delay(start_method):
    started = time.monotonic()
    status, stdout, stderr = run_script(
        ["--delay", "0.3", "--start-method", start_method]
    )
    elapsed = time.monotonic() - started
    assert (status, stderr) == (0, "")
    assert assert_posts_lines(stdout) == []
    assert 0.3 <= elapsed < mp.DELAY


@pytest.mark.parametrize("start_method", START_METHODS)
def test_main_after_set_start_method(start_method):
    program = (
        "import multiprocessing, sys\n"
        "multiprocessing.set_start_method(sys.argv[1])\n"
        "import mp\n"
        "sys.exit(mp.main(['--delay', '0']))\n"
    )
    done = run_program(program, start_method)
    assert (done.returncode, done.stderr) == (0, "")
    assert assert_posts_lines(done.stdout) == []


@pytest.mark.parametrize(
    "unbuffered", ["", "1"], ids=["buffered", "PYTHONUNBUFFERED=1"]
)
@pytest.mark.parametrize("stdout_to", ["pipe", "file", "terminal"])
def test_lines_arrive_whole_and_in_order(stdout_to, unbuffered):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    status, stdout, stderr = run_script(["--delay", "0"], stdout_to, env)
    assert (status, stderr) == (0, "")
    assert assert_posts_lines(stdout) == []


def test_worker_writes_its_line_in_one_piece_before_its_result(monkeypatch):
    # print() writes the text and the newline separately, and with PYTHONUNBUFFERED=1
    # each goes out on its own, so ten workers can mix their lines.
    events = []

    class Recorder:
        def write(self, text):
            events.append(("write", text))

        def flush(self):
            events.append(("flush",))

        def put(self, item):
            events.append(("put", item))

    monkeypatch.setattr(sys, "stdout", Recorder())
    mp.get_pet_name("adam", "max", Recorder(), 0)
    assert events == [
        ("write", "adding to queue\n"),
        ("flush",),
        ("put", ("adam", "pet name: max")),
    ]


def test_compute_pet_name_burns_its_delay_in_cpu_then_reports_the_same_way(
    monkeypatch,
):
    reported = []

    def report(person, pet_name, output, delay):
        reported.append((person, pet_name, output, delay))

    monkeypatch.setattr(mp, "get_pet_name", report)
    started = time.thread_time()
    mp.compute_pet_name("adam", "max", "the queue", 0.2)
    assert time.thread_time() - started >= 0.2
    assert reported == [("adam", "max", "the queue", 0)]


def test_importing_mp_starts_nothing_and_prints_nothing():
    program = (
        "import multiprocessing.process, multiprocessing.queues\n"
        "calls = []\n"
        "multiprocessing.process.BaseProcess.start = lambda self: calls.append('start')\n"
        "multiprocessing.queues.Queue.__init__ = lambda self, *a, **k: calls.append('Queue')\n"
        "import mp\n"
        "print(calls)\n"
    )
    done = run_program(program)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


# The timeline


def parse_timeline(lines: list[str]) -> tuple[dict[str, tuple[int, int]], str]:
    """The rows of a chart as {person: (first column, last column)}, and its summary."""
    axis, *rows, summary = lines
    assert axis.startswith("seconds ")
    label = len(re.match(r"seconds *", axis).group())
    spans = {}
    for row in rows:
        person, bar = row[:label].strip(), row[label:]
        assert set(bar.strip()) == {"="} and bar.lstrip() == bar.strip(), row
        spans[person] = (len(bar) - len(bar.lstrip()), len(bar) - 1)
    return spans, summary


SUMMARY = re.compile(
    r"(\d+) lookups of ([\d.]+) s = ([\d.]+) s of work in ([\d.]+) s: "
    r"([\d.]+)x speedup \(at most (\d+)x here\)"
)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_timeline_shows_every_lookup_and_the_measured_speedup(start_method):
    delay = 0.5
    # mp.main() timed from inside the script, so Python's start-up is not counted.
    program = (
        "import sys, time, mp\n"
        "sys.argv[0] = 'mp.py'\n"
        "started = time.monotonic()\n"
        "status = mp.main(sys.argv[1:])\n"
        "print(time.monotonic() - started, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    args = ["--delay", str(delay), "--timeline", "--start-method", start_method]
    done = run_program(program, *args)
    assert done.returncode == 0, done.stderr
    elapsed = float(done.stderr)
    chart = assert_posts_lines(done.stdout)
    assert all(len(line) <= 80 for line in chart), done.stdout
    spans, summary = parse_timeline(chart)
    assert list(spans) == list(pet_maps)
    middle = max(last for _, last in spans.values()) // 2
    assert all(first <= middle <= last for first, last in spans.values()), done.stdout
    people, each, work, wall, speedup, best = SUMMARY.fullmatch(summary).groups()
    assert (int(people), float(each), float(work), int(best)) == (10, delay, 5.0, 10)
    assert float(wall) == pytest.approx(elapsed, rel=0.1)
    assert float(speedup) == pytest.approx(10 * delay / elapsed, rel=0.1)


def test_work_cpu_computes_and_allows_at_most_the_usable_cores(capfd):
    before = os.times()
    assert mp.main(["--work", "cpu", "--delay", "0.05", "--timeline"]) == 0
    after = os.times()
    cpu = sum(after[i] - before[i] for i in range(4))  # user + sys, workers included
    chart = assert_posts_lines(capfd.readouterr().out)
    best = SUMMARY.fullmatch(chart[-1]).group(6)
    assert int(best) == min(10, mp.usable_cores())
    assert cpu >= 0.9 * 10 * 0.05


def test_timeline_places_each_row_on_the_common_axis():
    times = {
        "adam": (100.0, 102.0),
        "steve": (100.5, 101.0),
        "michelle": (101.0, 101.2),
    }
    chart = mp.draw_timeline(times, delay=0.5, best=3).splitlines()
    # The run, 2 s, takes columns 0 to 54 after the names: 27 columns a second.
    assert (
        chart[0] == "seconds" + " " * 13 + "0" + " " * 24 + "1.00" + " " * 25 + "2.00"
    )
    spans, summary = parse_timeline(chart)
    assert spans == {"adam": (0, 54), "steve": (14, 27), "michelle": (27, 32)}
    assert summary == (
        "3 lookups of 0.5 s = 1.5 s of work in 2.00 s: 0.8x speedup (at most 3x here)"
    )


# Never hang, never lose a result


@pytest.mark.timeout(8)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_results_of_a_megabyte_each_come_back_intact(start_method):
    # Joining before reading deadlocks once the results outgrow the pipe (64 KB on Linux).
    big = {
        person: {"pet_name": entry["pet_name"] * 2**20}
        for person, entry in THREE.items()
    }
    results = mp.find_pet_names(big, 0, start_method)
    assert collections.Counter(results) == collections.Counter(
        f"pet name: {entry['pet_name']}" for entry in big.values()
    )


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize(
    "how, what_happened",
    [
        ("raise", "raised LookupError: no record of sylvester"),
        ("exit", "exited with status 3"),
        ("kill", "was killed by SIGKILL"),
    ],
)
def test_a_failed_lookup_ends_the_run_within_a_second(
    start_method, how, what_happened, tmp_path
):
    stamp = tmp_path / "failed-at"
    # The other lookups would take 60 s: far past this test's time limit.
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(THREE, 60, start_method, lookup=FailingLookup(how, stamp))
    noticed_after = time.monotonic() - float(stamp.read_text())
    assert str(caught.value) == f"lookup for 'steve' {what_happened}"
    assert noticed_after < 1.0, f"the run ended {noticed_after:.2f} s after the failure"
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_lookup_that_sends_nothing_is_named(start_method):
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(ONE, 0, start_method, lookup=return_without_result)
    assert str(caught.value) == "lookup for 'steve' ended without sending its result"
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(
    "then, start_methods, raised",
    [
        ("timeout", START_METHODS, mp.PetLookupError),
        ("error", ["fork"], mp.PetLookupError),
        ("ctrl-c", ["fork"], KeyboardInterrupt),
        ("ctrl-c twice", ["fork"], KeyboardInterrupt),
        ("sigterm", ["fork"], SystemExit),
    ],
)
def test_a_worker_that_ignores_sigterm_is_killed_within_a_second(
    then, start_methods, raised, tmp_path
):
    people = THREE if then == "error" else ONE
    timeout = 0.5 if then == "timeout" else None
    for start_method in start_methods:
        stamp = tmp_path / f"stuck-at-{start_method}"
        lookup = StuckLookup(then, stamp)
        with pytest.raises(raised) as caught, sigterm_exits():
            mp.find_pet_names(people, 0, start_method, lookup, timeout=timeout)
        ended_after = time.monotonic() - float(stamp.read_text())
        assert ended_after < (timeout or 0) + 1.0, (
            f"{start_method}: {ended_after:.2f} s"
        )
        assert multiprocessing.active_children() == []
    if then == "timeout":
        assert (
            str(caught.value) == "lookup for 'steve' ran past the time limit of 0.5 s"
        )
    if then == "sigterm":
        assert caught.value.code == 128 + signal.SIGTERM


# Bad input


@pytest.mark.parametrize(
    "bad_entry, shown",
    [
        ({"name": "sylvester"}, "{'name': 'sylvester'}"),
        ({"pet_name": 7}, "{'pet_name': 7}"),
        ("sylvester", "'sylvester'"),
    ],
    ids=["no pet_name", "pet_name not a string", "not a mapping"],
)
def test_bad_entry_is_named_before_any_process_starts(
    bad_entry, shown, forbid_process_start
):
    with pytest.raises(mp.PetMapError) as caught:
        mp.find_pet_names({**pet_maps, "steve": bad_entry}, 0)
    assert (
        str(caught.value)
        == f"'steve' needs an entry like {{'pet_name': 'max'}}, got {shown}"
    )


def test_a_pet_map_that_is_not_a_mapping_is_refused(forbid_process_start):
    with pytest.raises(mp.PetMapError, match="^pet map must be a mapping, not list$"):
        mp.find_pet_names(list(pet_maps), 0)


def test_bad_pets_py_gives_one_line_and_status_1(tmp_path):
    shutil.copy(HERE / "mp.py", tmp_path)
    (tmp_path / "pets.py").write_text(
        "pet_maps = {'adam': {'pet_name': 'max'}, 'steve': {'name': 'sylvester'}}\n"
    )
    status, stdout, stderr = run_script([], cwd=tmp_path)
    assert (status, stdout) == (1, "")
    assert stderr.splitlines() == [
        (
            "mp.py: error in pets.py: 'steve' needs an entry like {'pet_name': 'max'}, "
            "got {'name': 'sylvester'}"
        )
    ]


def test_an_empty_pet_map_gives_an_empty_list_at_once(forbid_process_start):
    started = time.monotonic()
    assert mp.find_pet_names({}, delay=60) == []
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("what", ["delay", "timeout"])
@pytest.mark.parametrize("value", [-1, float("nan"), float("inf")])
def test_find_pet_names_refuses_a_bad_delay_or_timeout(
    what, value, forbid_process_start
):
    with pytest.raises(ValueError) as caught:
        mp.find_pet_names(pet_maps, **{"delay": 0, what: value})
    assert (
        str(caught.value) == f"{what} must be finite seconds, 0 or more, not {value!r}"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--delay", "-1"], "argument --delay: invalid seconds value: '-1'"),
        (["--delay", "inf"], "argument --delay: invalid seconds value: 'inf'"),
        (["--delay", "soon"], "argument --delay: invalid seconds value: 'soon'"),
        (["--timeout", "nan"], "argument --timeout: invalid seconds value: 'nan'"),
        (["--work", "gpu"], "argument --work: invalid choice: 'gpu'"),
        (
            ["--start-method", "thread"],
            "argument --start-method: invalid choice: 'thread'",
        ),
    ],
)
def test_bad_command_line_gets_argparse_error_and_status_2(args, message, capsys):
    with pytest.raises(SystemExit) as caught:
        mp.main(args)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as caught:
        mp.main(["--help"])
    assert caught.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    for option in [
        "--delay DELAY seconds each lookup takes (default: 2.0)",
        "--work {sleep,cpu} wait or compute (default: sleep)",
        "--start-method {" + ",".join(START_METHODS) + "}",
        "--timeout TIMEOUT seconds a lookup may take; None: no limit (default: None)",
        "--timeline then draw when each lookup ran",
    ]:
        assert option in help_text


# Signals, limits and a closed stdout, from the command line


@LINUX_ONLY
@pytest.mark.timeout(20)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_ctrl_c_at_any_moment_stops_everything(start_method):
    # A terminal sends Ctrl-C's SIGINT to every process in its foreground group,
    # workers still starting up included.
    ctrl_c = lambda script, workers: os.killpg(script, signal.SIGINT)
    for when in [0.0, 0.1, 0.2, 0.3, "workers"]:
        outcome = interrupt_script(start_method, ctrl_c, when)
        assert (outcome.status, outcome.stdout, outcome.stderr) == (
            130,
            "",
            "mp.py: interrupted\n",
        ), f"Ctrl-C at {when}"
        # Workers that are up stop at SIGTERM at once: no need for the grace period.
        limit = mp.GRACE if when == "workers" else 1.0
        assert outcome.took < limit, (
            f"Ctrl-C at {when}: exited after {outcome.took:.2f} s"
        )
        assert outcome.left == {}, f"Ctrl-C at {when}: processes left behind"


@LINUX_ONLY
@pytest.mark.timeout(20)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_signals_to_the_script_alone_stop_everything(start_method):
    term, hup, kill = signal.SIGTERM, signal.SIGHUP, signal.SIGKILL
    to_script = lambda sig: lambda script, workers: os.kill(script, sig)
    kill_worker = lambda script, workers: os.kill(workers[0], kill)
    by_term, by_hup, by_kill, worker_killed = side_by_side(
        lambda: interrupt_script(start_method, to_script(term)),
        lambda: interrupt_script(start_method, to_script(hup)),
        # multiprocessing alone leaves the workers running when their parent is killed.
        lambda: interrupt_script(start_method, to_script(kill), within=2.0),
        lambda: interrupt_script(start_method, kill_worker),
    )
    for outcome, status, line in [
        (by_term, 143, "mp.py: stopped by SIGTERM"),
        (by_hup, 129, "mp.py: stopped by SIGHUP"),
    ]:
        assert (outcome.status, outcome.stdout, outcome.stderr) == (
            status,
            "",
            line + "\n",
        )
        # Its workers stop at SIGTERM at once: no need for the grace period.
        assert outcome.took < mp.GRACE, f"{line}: exited after {outcome.took:.2f} s"
        assert outcome.left == {}, f"{line}: processes left behind"
    assert by_kill.status == -signal.SIGKILL
    assert by_kill.left == {}, "workers outlived the killed script by 2 s"
    assert (worker_killed.status, worker_killed.stdout) == (1, "")
    [line] = worker_killed.stderr.splitlines()
    prefix, person, suffix = line.split("'")
    assert (prefix, suffix) == ("mp.py: error: lookup for ", " was killed by SIGKILL")
    assert person in pet_maps
    assert worker_killed.took < 1.0 and worker_killed.left == {}


@pytest.mark.parametrize("start_method", START_METHODS)
def test_timeout_from_the_command_line_names_person_and_limit(start_method):
    started = time.monotonic()
    status, stdout, stderr = run_script(
        ["--delay", "60", "--timeout", "0.5", "--start-method", start_method]
    )
    elapsed = time.monotonic() - started
    assert (status, stdout) == (1, "")
    assert (
        stderr == "mp.py: error: lookup for 'adam' ran past the time limit of 0.5 s\n"
    )
    assert 0.5 <= elapsed < 0.5 + 1.0 + 0.5  # the limit, a second, Python's start-up


def many_people(folder: Path, count: int) -> Path:
    """A copy of the kit in `folder` whose pets.py has `count` people."""
    shutil.copy(HERE / "mp.py", folder)
    people = {f"person{n}": {"pet_name": f"pet{n}"} for n in range(count)}
    (folder / "pets.py").write_text(f"pet_maps = {people!r}\n")
    return folder


def with_open_files_limit(limit: int, command: list[str]) -> list[str]:
    """The command run under `ulimit -n LIMIT`, as a user would; 256 is macOS's default."""
    return ["bash", "-c", f'ulimit -n {limit} && exec "$@"', "bash", *command]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux's limits")
def test_more_people_than_open_files_allow_get_one_line(tmp_path):
    kit = many_people(tmp_path, 200)
    runs = side_by_side(
        *(
            lambda method=method: subprocess.run(
                with_open_files_limit(
                    256,
                    [
                        sys.executable,
                        "mp.py",
                        "--delay",
                        "60",
                        "--start-method",
                        method,
                    ],
                ),
                check=False,
                cwd=kit,
                capture_output=True,
                text=True,
                timeout=9,
            )
            for method in START_METHODS
        )
    )
    for run in runs:
        assert (run.returncode, run.stdout) == (1, "")
        assert re.fullmatch(
            r"mp.py: error: 200 workers, one per person, need about \d+ open files, "
            r"but the limit is 256 \(ulimit -n\)\n",
            run.stderr,
        ), run.stderr


def test_no_posix_semaphores_gives_one_line():
    # A read-only /dev/shm, in a mount namespace of its own, as on AWS Lambda.
    probe = ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o ro none /dev/shm"]
    try:
        usable = (
            subprocess.run(
                probe, check=False, capture_output=True, timeout=5
            ).returncode
            == 0
        )
    except FileNotFoundError:
        usable = False
    if not usable:
        pytest.skip("needs unshare and the right to mount (root on Linux)")
    command = f"{probe[-1]} && exec {shlex.quote(sys.executable)} mp.py --delay 0"
    done = subprocess.run(
        [*probe[:-1], command],
        check=False,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=9,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "mp.py: error: multiprocessing's Queue needs POSIX semaphores, and they are "
        "not available here ([Errno 30] Read-only file system)\n"
    )


@LINUX_ONLY
@pytest.mark.parametrize("start_method", START_METHODS)
def test_stdout_closed_early_ends_quietly(start_method):
    # `python3 mp.py | head -1`: head leaves after one line, and stdout is closed
    # before the workers, or the parent, write the rest.
    pipeline = (
        f"{shlex.quote(sys.executable)} mp.py --delay 0.2 --start-method {start_method}"
        " | head -1; exit ${PIPESTATUS[0]}"
    )
    reader, writer = os.pipe()
    os.close(reader)  # closed before anyone writes: every write fails

    def closed_from_the_start():
        with script_group(
            ["--delay", "0.2", "--start-method", start_method], stdout=writer
        ) as script:
            script.wait(timeout=9)
            return script.returncode, "", script.stderr.read(), script.pid

    def through_head():
        with subprocess.Popen(
            ["bash", "-c", pipeline],
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as shell:
            stdout, stderr = shell.communicate(timeout=9)
        return shell.returncode, stdout, stderr, shell.pid

    try:
        runs = side_by_side(closed_from_the_start, through_head)
    finally:
        os.close(writer)
    assert runs[1][1] == "adding to queue\n"
    for status, _, stderr, group in runs:
        assert (status, stderr) == (1, "")
        assert wait_until_group_is_empty(group, within=1.0) == {}


def test_a_closed_stdout_in_the_parent_ends_quietly():
    # Every worker's line got through, then the reader left: only the parent's
    # own lines meet the closed pipe, when it flushes them (stdout buffered).
    program = (
        "import sys, mp\n"
        "mp.find_pet_names = lambda *args: ['pet name: max']\n"
        "sys.exit(mp.main(['--delay', '0']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = run_program(program, env=env, stdout=writer)
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (1, "")


# The README


def readme_outputs() -> list[tuple[str, list[str]]]:
    """Each output block in README.md: the command on its `$ ` line, and the lines after it."""
    blocks = re.findall(
        r"```\n(\$ python3 mp\.py.*?)```", (HERE / "README.md").read_text(), re.DOTALL
    )
    return [(block.splitlines()[0][2:], block.splitlines()[1:]) for block in blocks]


def shape(lines: list[str]) -> list:
    """Lines with what varies from run to run taken out: figures, bar lengths, result order."""
    shaped = []
    for line in lines:
        if line.startswith("['pet name: "):
            shaped.append(collections.Counter(ast.literal_eval(line)))
            continue
        line = re.sub(r"\d+(\.\d+)?", "N", line)
        line = re.sub(r"N( +N)*", "N", line)  # the axis' ticks
        line = re.sub(r" *=+", " =", line)  # a row's bar
        shaped.append(re.sub(r" +", " ", line))
    return shaped


@pytest.mark.timeout(30)
def test_readme_shows_what_the_kit_prints():
    blocks = readme_outputs()
    assert len(blocks) >= 4
    runs = side_by_side(
        *(
            lambda command=command: (
                subprocess.run(
                    [sys.executable, *shlex.split(command)[1:]],
                    check=False,
                    cwd=HERE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=25,
                ).stdout
            )
            for command, _ in blocks
        )
    )
    for (command, shown), printed in zip(blocks, runs):
        assert shape(shown) == shape(printed.splitlines()), command
