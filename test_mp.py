"""Tests for mp.py: every pet name comes back once, in about one delay, under every start method.

The failure tests check that no lookup can hang the run, lose a result or leave
a process behind. A bug in this kit usually shows up as a hang, so every test
has a time limit (pytest-timeout).
"""

import ast
import collections
import dataclasses
import multiprocessing
import os
import pty
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
ONE = {"adam": pet_maps["adam"]}
LINUX_ONLY = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads process details from /proc"
)

pytestmark = pytest.mark.timeout(10)


# Lookups the tests pass to find_pet_names(). They live at module level so that
# spawn and forkserver children can import them.


def put_start_method(pet_name: str, output, delay: float) -> None:
    """Answer with the start method that made this process, read from its command line."""
    cmdline = Path("/proc/self/cmdline").read_bytes()
    started_by = [
        m for m in ("forkserver", "spawn") if f"multiprocessing.{m}".encode() in cmdline
    ]
    output.put(started_by[0] if started_by else "fork")


def return_without_result(pet_name: str, output, delay: float) -> None:
    """Exit cleanly without putting anything on the queue."""


@dataclasses.dataclass
class FailingLookup:
    """The real lookup for everyone but Steve, whose lookup fails in the way `how` says.

    Just before failing it writes the time (time.monotonic(), which is the same
    clock in every process on Linux) to `stamp`, so a test can tell how long the
    run took to notice.
    """

    how: str  # "raise", "exit" or "kill"
    stamp: Path

    def __call__(self, pet_name: str, output, delay: float) -> None:
        if pet_name != pet_maps["steve"]["pet_name"]:
            return mp.get_pet_name(pet_name, output, delay)
        self.stamp.write_text(repr(time.monotonic()))
        if self.how == "raise":
            raise LookupError("no record of sylvester")
        if self.how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)


# Helpers


def assert_posts_lines(stdout: str) -> None:
    """Ten 'adding to queue', then 'consuming from queue:', then the list of all ten results."""
    lines = stdout.splitlines()
    assert lines[:11] == ["adding to queue"] * 10 + ["consuming from queue:"], stdout
    assert len(lines) == 12, stdout
    assert collections.Counter(ast.literal_eval(lines[11])) == EXPECTED


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


def wait_for_workers(leader: int, count: int) -> list[int]:
    """Wait until `count` workers of the script `leader` are running and ignore Ctrl-C.

    Workers are the processes in the leader's group apart from the leader and
    multiprocessing's helpers (the resource tracker and the fork server, both
    children of the leader).
    """
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        processes = group_processes(leader)
        workers = [
            pid
            for pid, process in processes.items()
            if pid != leader
            and not (
                process["parent"] == leader
                and (
                    b"resource_tracker" in process["cmdline"]
                    or b"forkserver" in process["cmdline"]
                )
            )
        ]
        if len(workers) == count and all(
            processes[pid]["ignores_sigint"] for pid in workers
        ):
            return workers
        time.sleep(0.01)  # polling for a state, not waiting out a race
    pytest.fail(f"{count} workers did not start within 8 s: {group_processes(leader)}")


def wait_until_group_is_empty(group: int, within: float) -> dict[int, dict]:
    """Wait up to `within` seconds for every process in the group to exit; return any left."""
    deadline = time.monotonic() + within
    while (left := group_processes(group)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return left


@pytest.fixture
def forbid_process_start(monkeypatch):
    """Make any attempt to start a process fail the test."""

    def start(self):
        pytest.fail(f"a process was started: {self}")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)


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
def test_all_ten_names_come_back_once_in_about_one_delay(start_method):
    started = time.monotonic()
    results = mp.find_pet_names(pet_maps, delay=mp.DELAY, start_method=start_method)
    elapsed = time.monotonic() - started
    speedup = len(pet_maps) * mp.DELAY / elapsed
    report = f"{len(pet_maps)} lookups of {mp.DELAY} s took {elapsed:.2f} s: speedup {speedup:.1f}x"
    assert collections.Counter(results) == EXPECTED
    # Run one by one they take 10 delays, in two batches 2 delays: both fail here.
    assert mp.DELAY <= elapsed < 1.75 * mp.DELAY, report


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


@pytest.mark.timeout(15)
def test_python3_mp_py_prints_the_posts_lines():
    status, stdout, stderr = run_script([])
    assert (status, stderr) == (0, "")
    assert_posts_lines(stdout)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_command_line_start_method(start_method):
    status, stdout, stderr = run_script(
        ["--delay", "0", "--start-method", start_method]
    )
    assert (status, stderr) == (0, "")
    assert_posts_lines(stdout)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_main_after_set_start_method(start_method):
    program = (
        "import multiprocessing, sys\n"
        "multiprocessing.set_start_method(sys.argv[1])\n"
        "import mp\n"
        "sys.exit(mp.main(['--delay', '0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, start_method],
        check=False,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=9,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert_posts_lines(done.stdout)


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
    assert_posts_lines(stdout)


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
    mp.get_pet_name("max", Recorder(), 0)
    assert events == [
        ("write", "adding to queue\n"),
        ("flush",),
        ("put", "pet name: max"),
    ]


def test_importing_mp_starts_nothing_and_prints_nothing():
    program = (
        "import multiprocessing.process, multiprocessing.queues\n"
        "calls = []\n"
        "multiprocessing.process.BaseProcess.start = lambda self: calls.append('start')\n"
        "multiprocessing.queues.Queue.__init__ = lambda self, *a, **k: calls.append('Queue')\n"
        "import mp\n"
        "print(calls)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        check=False,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=9,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")


# Never hang, never lose a result


@pytest.mark.timeout(8)
@pytest.mark.parametrize("start_method", START_METHODS)
def test_results_of_a_megabyte_each_come_back_intact(start_method):
    # Joining before reading deadlocks once a result outgrows the pipe (64 KB on Linux).
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
def test_a_lookup_that_sends_nothing_does_not_hang(start_method):
    with pytest.raises(mp.PetLookupError, match="without sending its result"):
        mp.find_pet_names(THREE, 0, start_method, lookup=return_without_result)
    assert multiprocessing.active_children() == []


# Bad input


@pytest.mark.parametrize(
    "bad_entry, shown",
    [({"name": "sylvester"}, "{'name': 'sylvester'}"), ("sylvester", "'sylvester'")],
    ids=["no pet_name", "not a mapping"],
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
    with pytest.raises(mp.PetMapError, match="must be a mapping, got list"):
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


@pytest.mark.parametrize("delay", [-1, float("nan"), float("inf")])
def test_find_pet_names_refuses_a_bad_delay(delay, forbid_process_start):
    with pytest.raises(
        ValueError, match="delay must be a finite number of seconds, 0 or more"
    ):
        mp.find_pet_names(pet_maps, delay)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--delay", "-1"], "argument --delay: invalid seconds value: '-1'"),
        (["--delay", "inf"], "argument --delay: invalid seconds value: 'inf'"),
        (["--delay", "soon"], "argument --delay: invalid seconds value: 'soon'"),
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


def test_help_explains_both_options(capsys):
    with pytest.raises(SystemExit) as caught:
        mp.main(["--help"])
    assert caught.value.code == 0
    help_text = capsys.readouterr().out
    assert "--delay SECONDS" in help_text and "(default: 2.0)" in help_text
    assert "--start-method {" + ",".join(START_METHODS) + "}" in help_text


# Ctrl-C and a killed worker, from the command line


def interrupt_script(start_method: str, interrupt) -> tuple[int, float, dict, str, str]:
    """Run `mp.py --delay 60` leading a process group of its own, as a terminal runs it.

    Once its ten workers are up, calls interrupt(script's pid, workers' pids) and
    waits for the script to exit. Returns its exit status, how many seconds after
    the interruption it exited, the processes of its group still there 3 s later,
    and its stdout and stderr.
    """
    with subprocess.Popen(
        [sys.executable, "mp.py", "--delay", "60", "--start-method", start_method],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as script:
        workers = wait_for_workers(script.pid, len(pet_maps))
        interrupted = time.monotonic()
        interrupt(script.pid, workers)
        status = script.wait(timeout=5)
        took = time.monotonic() - interrupted
        left = wait_until_group_is_empty(script.pid, within=3)
        stdout, stderr = script.communicate(timeout=5)
    return status, took, left, stdout, stderr


@LINUX_ONLY
@pytest.mark.parametrize("start_method", START_METHODS)
def test_ctrl_c_stops_everything_within_a_second(start_method):
    # A terminal sends Ctrl-C's SIGINT to every process in its foreground group.
    status, took, left, stdout, stderr = interrupt_script(
        start_method, lambda script, workers: os.killpg(script, signal.SIGINT)
    )
    assert (status, stdout, stderr) == (130, "", "mp.py: interrupted\n")
    assert took < 1.0, f"the script exited {took:.2f} s after Ctrl-C"
    assert left == {}, "processes left behind"


@LINUX_ONLY
@pytest.mark.parametrize("start_method", START_METHODS)
def test_a_killed_worker_gives_one_line_and_status_1(start_method):
    status, took, left, stdout, stderr = interrupt_script(
        start_method, lambda script, workers: os.kill(workers[0], signal.SIGKILL)
    )
    assert (status, stdout) == (1, "")
    [line] = stderr.splitlines()
    prefix, person, suffix = line.split("'")
    assert (prefix, suffix) == ("mp.py: error: lookup for ", " was killed by SIGKILL")
    assert person in pet_maps
    assert took < 1.0, f"the script exited {took:.2f} s after the worker was killed"
    assert left == {}, "processes left behind"
