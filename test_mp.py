"""Tests for mp.py: every pet name comes back once, in about one delay, under every start method.

The other tests check the kit's promise: whatever happens (a lookup that
fails, hangs, lingers or floods the pipe; a signal, a limit, a closed stream,
bad data), the run ends in bounded time, leaves no process behind, loses no
result it received and says what happened in one line. A bug here usually
shows up as a hang, so every test has a time limit (pytest-timeout), and a
test that fails kills what it started. The timed tests print what they
measured at the end of the run; on a machine too busy to tell, they skip and
say why.
"""

import ast
import collections
import concurrent.futures
import contextlib
import dataclasses
import errno
import importlib
import json
import multiprocessing
import os
import pickle
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import warnings
from pathlib import Path

import pytest
import pytest_timeout  # noqa: F401  (without it the time limits below would be ignored)

import mp
from pets import pet_maps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / ".ci"))  # the test lookups, which workers import
lookups = importlib.import_module("lookups")

START_METHODS = multiprocessing.get_all_start_methods()
EXPECTED = collections.Counter(f"pet name: {e['pet_name']}" for e in pet_maps.values())
THREE = {person: pet_maps[person] for person in ("adam", "steve", "michelle")}
LINUX = sys.platform.startswith("linux")
LINUX_ONLY = pytest.mark.skipif(not LINUX, reason="reads process details from /proc")

pytestmark = pytest.mark.timeout(10)


# The suite's own set-up


class SpeedupReport:
    """Collects what the timed tests measure, and prints it after the test run."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.lines:
            terminalreporter.section("speedups measured by the timed tests")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def speedups(pytestconfig) -> list[str]:
    """A list whose lines pytest prints at the end, passed, failed or skipped."""
    report = SpeedupReport()
    pytestconfig.pluginmanager.register(report, "mp-speedups")
    return report.lines


@pytest.fixture(scope="session", autouse=True)
def signals_as_in_a_terminal():
    """Let the stop signals through, as a terminal does, even in a background job or nohup.

    A shell starts a background job with SIGINT ignored, and nohup ignores
    SIGHUP. Every process the tests start would inherit that, and mp.py keeps
    a signal that it was started with ignored: no signal test could work.
    """
    handlers = {signal.SIGINT: signal.default_int_handler}
    handlers |= {signal.SIGTERM: signal.SIG_DFL, signal.SIGHUP: signal.SIG_DFL}
    previous = {number: signal.signal(number, h) for number, h in handlers.items()}
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    """Whatever a test does, no worker it started, nor anything in its group, outlives it."""
    yield
    for child in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        child.kill()
        child.join()


@pytest.fixture(params=START_METHODS)
def start_method(request) -> str:
    """Each start method this platform has: fork, spawn and forkserver on Linux."""
    return request.param


# Helpers


def posts_lines(stdout: str, people: dict = pet_maps) -> list[str]:
    """Check the post's lines: an 'adding to queue' per person, 'consuming from queue:'
    and the list of every result, each once. Returns the lines after them."""
    lines = stdout.splitlines()
    count = len(people)
    assert lines[: count + 1] == ["adding to queue"] * count + [
        "consuming from queue:"
    ], stdout
    expected = collections.Counter(
        f"pet name: {e['pet_name']}" for e in people.values()
    )
    assert collections.Counter(ast.literal_eval(lines[count + 1])) == expected, stdout
    return lines[count + 2 :]


def processes_of(session: int) -> dict[int, dict]:
    """The live processes of a session: pid -> its group, parent, command and signal masks."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:  # it has just exited
            continue
        state, parent, group, sid = stat.rsplit(")", 1)[1].split()[:4]
        if int(sid) != session or state == "Z":
            continue
        fields = dict(
            line.split(":\t", 1) for line in status.splitlines() if ":\t" in line
        )
        found[int(entry.name)] = {
            "group": int(group),
            "parent": int(parent),
            "command": command,
            "blocked": int(fields["SigBlk"], 16),
            "ignored": int(fields["SigIgn"], 16),
        }
    return found


def workers_up(script: int) -> list[int]:
    """The workers of a script that have set themselves up: each leads its own process
    group and has let the stop signals in (multiprocessing's helpers do neither)."""
    return [
        pid
        for pid, process in processes_of(script).items()
        if pid != script and process["group"] == pid and not process["blocked"]
    ]


def bit(number: int) -> int:
    """A signal's bit in a /proc signal mask."""
    return 1 << (number - 1)


def wait_for(condition, what: str, within: float = 8):
    """Poll until condition() returns something true; return it, or fail naming `what`."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.005)  # polling for a state, not waiting out a race
    pytest.fail(f"{what} did not happen within {within} s")


def wait_until_gone(session: int, within: float) -> dict[int, dict]:
    """Wait up to `within` seconds for every process of a session to end; return any left."""
    deadline = time.monotonic() + within
    while (left := processes_of(session)) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for a state, not waiting out a race
    return left


def side_by_side(*calls):
    """Run independent scenarios at the same time; return their results in order."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


@dataclasses.dataclass
class Outcome:
    """What became of one run of the script."""

    status: int
    stdout: str
    stderr: str
    took: float  # seconds from the action (or the start) to the exit
    left: dict  # processes of its session still running `within` seconds after the exit


def run(
    *args: str,
    program: str | None = None,
    command: list[str] | None = None,
    people: dict | None = None,
    cwd: Path = HERE,
    env: dict | None = None,
    shell: str = "",
    prefix: tuple = (),
    pass_fds: tuple = (),
    stdout: str = "pipe",
    act=None,
    when: float | str | None = None,
    within: float = 1.0,
    limit: float = 9,
) -> Outcome:
    """Run `python mp.py ARGS` (or `python -c PROGRAM ARGS`, or COMMAND) in a session of its own.

    people: run a copy of the kit whose pets.py holds these people instead.
    shell: redirections for a shell to apply first, as a user would type them
    ("<&- >&-", ">/dev/full"). prefix: a command to run it with (nohup).
    stdout: "pipe", "file" or "terminal" (a pseudo-terminal that is the
    session's controlling terminal; "terminal tostop" with `stty tostop` set).
    act(pid): what to do to the script once `when` comes: "workers" (all its
    workers are up), or a number of seconds after its first child appeared.
    Whatever happens, everything in the session is killed at the end.
    """
    with contextlib.ExitStack() as cleanup:
        if people is not None:
            cwd = Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
            shutil.copy(HERE / "mp.py", cwd)
            (cwd / "pets.py").write_text(f"pet_maps = {people!r}\n")
        if command is None:
            command = [
                sys.executable,
                *(["-c", program] if program else ["mp.py"]),
                *args,
            ]
        if shell:
            command = ["bash", "-c", f'exec "$@" {shell}', "bash", *command]
        command = [*prefix, *command]
        output: dict = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE}
        terminal = reader = None
        chunks: list[bytes] = []
        if stdout == "file":
            output["stdout"] = cleanup.enter_context(tempfile.TemporaryFile("w+"))
        elif stdout.startswith("terminal"):
            reader, terminal = pty.openpty()
            if stdout.endswith("tostop"):
                attributes = termios.tcgetattr(terminal)
                attributes[3] |= termios.TOSTOP
                termios.tcsetattr(terminal, termios.TCSANOW, attributes)
            command = ["setsid", "--ctty", *command]  # the terminal becomes its own
            output = {"stdin": terminal, "stdout": terminal}
        script = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=terminal is None,
            pass_fds=pass_fds,
            **output,
        )
        cleanup.callback(end_session, script)
        if terminal is not None:
            os.close(terminal)
            drain = threading.Thread(target=read_terminal, args=(reader, chunks))
            drain.start()
        started = time.monotonic()
        if when == "workers":
            count = len(pet_maps if people is None else people)
            wait_for(lambda: len(workers_up(script.pid)) == count, "the workers up")
        elif when is not None:
            wait_for(lambda: len(processes_of(script.pid)) > 1, "a first child")
            time.sleep(when)  # the moment under test
        if act is not None:
            started = time.monotonic()
            act(script.pid)
        status = script.wait(timeout=limit)
        took = time.monotonic() - started
        left = wait_until_gone(script.pid, within)
        printed, errors = script.communicate(timeout=limit)
        if terminal is not None:
            drain.join(timeout=limit)
            printed = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
        elif stdout == "file":
            output["stdout"].seek(0)
            printed = output["stdout"].read()
        return Outcome(status, printed, errors, took, left)


def end_session(script: subprocess.Popen) -> None:
    """Kill whatever is left of a script's session, and the script."""
    for pid in processes_of(script.pid) if LINUX else [script.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    script.kill()
    script.wait()
    for stream in (script.stdout, script.stderr):
        if stream:
            stream.close()


def read_terminal(reader: int, chunks: list[bytes]) -> None:
    """Read a pseudo-terminal until every process that has it open has closed it."""
    try:
        while chunk := os.read(reader, 4096):
            chunks.append(chunk)
    except OSError:  # EIO: nobody has the terminal open any more
        pass
    finally:
        os.close(reader)


def only_line(outcome: Outcome) -> str:
    """The one line a failed run wrote on stderr."""
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    return lines[0]


def leftover_sleeps(seconds: str) -> list[int]:
    """The live `sleep SECONDS` processes, which lookups.with_children starts."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            command = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
            alive = command and (entry / "stat").read_text().split(") ")[1][0] != "Z"
            if command == f"sleep\0{seconds}\0".encode() and alive:
                found.append(int(entry.name))
    return found


# .ci/mutants.py sets MP_TEST_TIMING=off: a mutant must be caught by what the kit
# does, not only by how long it takes, which a busy machine can change.
TIMING = os.environ.get("MP_TEST_TIMING") != "off"


def quick(seconds: float, limit: float, what: str) -> None:
    """A timing check: `what` took `seconds`, which must be under `limit`."""
    if TIMING:
        assert seconds < limit, f"{what} took {seconds:.2f} s, not under {limit} s"


def alive(pid: int) -> bool:
    """Whether a process is running (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children_gone(seconds: str, pids: Path) -> bool:
    """Whether lookups.with_children's `sleep SECONDS`, and its forked copy, have ended."""
    return not leftover_sleeps(seconds) and not alive(int(pids.read_text()))


def burn(seconds: float) -> None:
    """Compute for `seconds` of this thread's CPU time."""
    done_at = time.thread_time() + seconds
    while time.thread_time() < done_at:
        pass


def spare_cores(seconds: float = 0.15) -> float:
    """How many cores plain CPU-burning processes, one per usable core, get right now."""
    cores = mp.usable_cores()
    context = multiprocessing.get_context("fork")
    burners = [context.Process(target=burn, args=(seconds,)) for _ in range(cores)]
    started = time.monotonic()
    for burner in burners:
        burner.start()
    for burner in burners:
        burner.join(timeout=5)
    return cores * seconds / (time.monotonic() - started)


def busy(spare: float) -> str:
    """Why a timing cannot be judged here, or "" if the machine has cores to spare."""
    if spare >= 0.7 * mp.usable_cores():
        return ""
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    return (
        f"the machine is busy: CPU-burning processes got {spare:.1f} of "
        f"{mp.usable_cores()} cores (load average {load})"
    )


# The post's run


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


TIMED_RUN = """
import json, sys, time
import mp
from pets import pet_maps
arrivals = []
started = time.monotonic()
mp.find_pet_names(pet_maps, mp.DELAY, sys.argv[1], arrivals=arrivals)
print(json.dumps([time.monotonic() - started, arrivals]))
"""


def readme_block(marker: str) -> str:
    """The code block that follows the README line `<!-- MARKER -->`, unindented."""
    text = (HERE / "README.md").read_text()
    found = re.search(rf"<!-- {marker} -->\n( *)```\w*\n(.*?)\n\1```", text, re.DOTALL)
    assert found, f"README.md has no block marked {marker}"
    indent = len(found.group(1))
    return "\n".join(line[indent:] for line in found.group(2).splitlines()) + "\n"


def with_start_method(program: str, method: str) -> str:
    """The README's program, told to use a start method first thing under its guard."""
    guard = "if __name__ == '__main__':\n"
    assert program.count(guard) == 1
    return program.replace(guard, f"{guard}    mp.set_start_method({method!r})\n")


def timed_command(command: list[str], cwd: Path = HERE) -> tuple[float, Outcome]:
    """run(command) and the seconds it took, Python's start-up included."""
    started = time.monotonic()
    outcome = run(command=command, cwd=cwd)
    return time.monotonic() - started, outcome


@pytest.mark.timeout(15)
def test_all_ten_names_come_back_once_in_about_one_delay(speedups, tmp_path):
    # Side by side, each in a process of its own: the kit under each start
    # method, `python3 mp.py` as a user runs it, and the README's corrected
    # version of the post's program under each start method.
    shutil.copy(HERE / "pets.py", tmp_path)
    for method in START_METHODS:
        program = with_start_method(readme_block("corrected program"), method)
        (tmp_path / f"post_{method}.py").write_text(program)
    runs = side_by_side(
        *(lambda m=method: run(m, program=TIMED_RUN) for method in START_METHODS),
        lambda: timed_command([sys.executable, "mp.py"]),
        *(
            lambda m=method: timed_command([sys.executable, f"post_{m}.py"], tmp_path)
            for method in START_METHODS
        ),
    )
    kit, (cli_took, cli), posts = runs[:3], runs[3], runs[4:]
    reports, failures = [], []
    for method, outcome in zip(START_METHODS, kit):
        assert (outcome.status, outcome.stderr) == (0, ""), method
        elapsed, arrivals = json.loads(outcome.stdout.splitlines()[-1])
        arrivals = [mp.Arrival(*arrival) for arrival in arrivals]
        reports.append(
            f"sleep, {method}: 10 lookups of {mp.DELAY} s in {elapsed:.2f} s, "
            f"{10 * mp.DELAY / elapsed:.1f}x speedup (at most 10x)"
        )
        assert collections.Counter(a.result for a in arrivals) == EXPECTED, method
        # Each lookup really waited, and all ten were waiting at one moment: run
        # one by one, or in batches, they would not all overlap, however fast
        # the machine.
        for arrival in arrivals:
            assert arrival.arrived - arrival.lookup_started >= mp.DELAY, method
        last_start = max(arrival.lookup_started for arrival in arrivals)
        assert last_start < min(arrival.arrived for arrival in arrivals), method
        # Near one delay: one by one takes 10 delays, in two batches 2.
        if not mp.DELAY <= elapsed < 1.75 * mp.DELAY:
            failures.append(reports[-1])
    assert (cli.status, cli.stderr) == (0, "")
    assert posts_lines(cli.stdout) == []
    assert shape(cli.stdout.splitlines()) == shape(readme_output("python3 mp.py"))
    for method, (took, post) in zip(START_METHODS, posts):
        assert (post.status, post.stderr) == (0, ""), method
        last = post.stdout.splitlines()[-1]
        assert collections.Counter(ast.literal_eval(last)) == EXPECTED, method
        reports.append(f"the README's program, {method}: {took:.2f} s")
        if not mp.DELAY <= took < 1.75 * mp.DELAY:
            failures.append(reports[-1])
    reports.append(f"python3 mp.py: {cli_took:.2f} s, Python's start-up included")
    if not mp.DELAY <= cli_took < 1.75 * mp.DELAY:
        failures.append(reports[-1])
    if failures and (why := busy(spare_cores())):
        speedups.extend(f"{report}; not judged, {why}" for report in reports)
        pytest.skip(why)
    speedups.extend(reports)
    assert not (failures and TIMING), failures


@pytest.mark.skipif(mp.usable_cores() < 2, reason="needs at least 2 usable cores")
def test_cpu_work_runs_in_parallel_up_to_the_usable_cores(speedups):
    people = dict(list(pet_maps.items())[:4])
    delay = 0.25
    cores = min(mp.usable_cores(), len(people))
    spare_before = spare_cores()
    before = os.times()
    started = time.monotonic()
    results = mp.find_pet_names(people, delay, "fork", mp.compute_pet_name)
    elapsed = time.monotonic() - started
    cpu = sum(a - b for a, b in zip(os.times()[:4], before[:4]))  # workers included
    spare = min(spare_before, spare_cores())
    work = len(people) * delay
    report = (
        f"cpu, fork: {len(people)} lookups of {delay} s of CPU in {elapsed:.2f} s, "
        f"{work / elapsed:.1f}x speedup (at most {cores}x, the usable cores; plain "
        f"CPU-burning processes got {spare:.1f}x); CPU time {cpu:.2f} s"
    )
    assert sorted(results) == sorted(
        f"pet name: {e['pet_name']}" for e in people.values()
    )
    assert cpu >= 0.9 * work, report  # the lookups really computed
    assert elapsed >= 0.99 * work / cores, report  # never faster than the cores allow
    if why := busy(spare):
        speedups.append(f"{report}; not judged, {why}")
        pytest.skip(why)
    speedups.append(report)
    # As parallel as the machine allows right now: one after another gives 1x.
    assert work / elapsed >= 0.75 * spare or not TIMING, report


def test_workers_use_the_start_method_asked_for_or_set(start_method):
    one = {"steve": pet_maps["steve"]}
    assert mp.find_pet_names(one, 0, start_method, lookups.start_method) == [
        start_method
    ]
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(start_method, force=True)
    try:
        assert mp.find_pet_names(one, 0, None, lookups.start_method) == [start_method]
    finally:
        multiprocessing.set_start_method(previous, force=True)


def test_results_come_in_the_order_they_arrive_with_their_times():
    people = {"adam": "max:0.2", "steve": "sylvester:0.1", "michelle": "fuzzy:0"}
    pet_map = {person: {"pet_name": name} for person, name in people.items()}
    arrivals: list[mp.Arrival] = []
    results = mp.find_pet_names(pet_map, 0, "fork", lookups.in_reverse, None, arrivals)
    assert results == ["pet name: fuzzy", "pet name: sylvester", "pet name: max"]
    assert [arrival.person for arrival in arrivals] == ["michelle", "steve", "adam"]
    for arrival in arrivals:
        wait = float(people[arrival.person].split(":")[1])
        assert arrival.process_started <= arrival.lookup_started
        assert wait <= arrival.arrived - arrival.lookup_started < wait + 0.08


def test_two_people_with_the_same_pet_get_a_result_each():
    same_pet = {"adam": {"pet_name": "max"}, "eve": {"pet_name": "max"}}
    assert mp.find_pet_names(same_pet, 0, "fork") == ["pet name: max"] * 2


def test_an_empty_pet_map_gives_an_empty_list_at_once():
    started = time.monotonic()
    assert mp.find_pet_names({}, delay=60) == []
    quick(time.monotonic() - started, 1.0, "an empty run")


def test_lines_arrive_whole_and_in_order_on_a_pipe_a_file_or_a_terminal():
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    unbuffered = {**plain, "PYTHONUNBUFFERED": "1"}
    places = ["pipe", "file", "terminal", "terminal tostop"]
    runs = [(place, env) for place in places for env in (plain, unbuffered)]
    outcomes = side_by_side(
        *(
            lambda p=place, e=env: run("--delay", "0", stdout=p, env=e)
            for place, env in runs
        )
    )
    for (place, env), outcome in zip(runs, outcomes):
        what = f"{place}, PYTHONUNBUFFERED={env.get('PYTHONUNBUFFERED', '')}"
        assert (outcome.status, outcome.stderr) == (0, ""), what
        assert posts_lines(outcome.stdout) == [], what


def test_a_line_is_one_write_flushed_before_the_result_is_put(monkeypatch):
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


def test_compute_pet_name_burns_its_delay_in_cpu_then_reports_the_same_way(monkeypatch):
    reported = []
    monkeypatch.setattr(
        mp, "get_pet_name", lambda *args, **kw: reported.append((args, kw))
    )
    started = time.thread_time()
    mp.compute_pet_name("max", "the queue", 0.2)
    assert time.thread_time() - started >= 0.2
    assert reported == [(("max", "the queue"), {"delay": 0})]


def test_importing_mp_starts_nothing_and_prints_nothing():
    program = (
        "import multiprocessing.process, multiprocessing.queues\n"
        "calls = []\n"
        "multiprocessing.process.BaseProcess.start = lambda self: calls.append('start')\n"
        "multiprocessing.queues.Queue.__init__ = lambda self, *a, **k: calls.append('Queue')\n"
        "import mp\n"
        "print(calls)\n"
    )
    outcome = run(program=program)
    assert (outcome.status, outcome.stdout, outcome.stderr) == (0, "[]\n", "")


# The timeline


def parse_timeline(lines: list[str]) -> tuple[dict[str, tuple[int, int, int]], str]:
    """A chart's rows as {person: (first, lookup's first, last column)}, and its summary."""
    axis, *rows, summary, legend = lines
    assert axis.startswith("seconds ") and legend.startswith("- a worker starting up")
    label = len(re.match(r"seconds *", axis).group())
    spans = {}
    for row in rows:
        person, bar = row[:label].strip(), row[label:]
        assert re.fullmatch(r" *-*=+", bar), row
        spans[person] = (len(bar) - len(bar.lstrip()), bar.find("="), len(bar) - 1)
    return spans, summary


SUMMARY = re.compile(
    r"(\d+) lookups? of ([\d.]+) s = ([\d.]+) s of work in ([\d.]+) s: "
    r"([\d.]+)x speedup \(at most (\d+)x here\)"
)


@pytest.mark.timeout(15)
def test_timeline_shows_every_lookup_and_the_measured_speedup():
    delay = 0.2
    # mp.main() timed from inside the script, so Python's start-up is not counted.
    program = (
        "import sys, time, mp\n"
        "started = time.monotonic()\n"
        "status = mp.main(sys.argv[1:])\n"
        "print(time.monotonic() - started, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    args = ("--delay", str(delay), "--timeline", "--start-method")
    outcomes = side_by_side(
        *(lambda m=method: run(*args, m, program=program) for method in START_METHODS)
    )
    for method, outcome in zip(START_METHODS, outcomes):
        assert outcome.status == 0, (method, outcome.stderr)
        elapsed = float(outcome.stderr)
        chart = posts_lines(outcome.stdout)
        assert all(len(line) <= 80 for line in chart), outcome.stdout
        spans, summary = parse_timeline(chart)
        assert list(spans) == list(pet_maps)
        # Each row starts up, then looks up. (That the lookups overlap is the
        # timed test's to check: here a spawned worker's start-up, with two more
        # runs side by side, can take longer than a lookup of 0.2 s.)
        for first, began, last in spans.values():
            assert first <= began <= last, outcome.stdout
        people, each, work, wall, speedup, best = SUMMARY.fullmatch(summary).groups()
        assert (int(people), float(each), float(work), int(best)) == (
            10,
            delay,
            2.0,
            10,
        )
        assert delay <= float(wall) <= elapsed + 0.01  # (wall is rounded)
        assert float(speedup) == pytest.approx(10 * delay / float(wall), rel=0.05)


def test_timeline_places_each_row_on_the_common_axis():
    arrivals = [
        mp.Arrival("adam", "pet name: max", 100.0, 100.5, 102.0),
        mp.Arrival("steve", "pet name: sylvester", 100.5, 100.5, 101.0),
        mp.Arrival("michelle", "pet name: fuzzy", 101.0, 101.0, 101.2),
    ]
    chart = mp.draw_timeline(arrivals, delay=0.5, best=3).splitlines()
    # The run, 2 s, takes columns 0 to 54 after the names: 27 columns a second.
    assert (
        chart[0] == "seconds" + " " * 13 + "0" + " " * 24 + "1.00" + " " * 25 + "2.00"
    )
    spans, summary = parse_timeline(chart)
    assert spans == {
        "adam": (0, 14, 54),
        "steve": (14, 14, 27),
        "michelle": (27, 27, 32),
    }
    assert summary == (
        "3 lookups of 0.5 s = 1.5 s of work in 2.00 s: 0.8x speedup (at most 3x here)"
    )


def test_timeline_copes_with_no_results_odd_names_and_an_ascii_stdout():
    assert mp.draw_timeline([], 2.0, 1) == "no results, so nothing to draw"
    arrivals = [
        mp.Arrival(7, "pet name: x", 0.0, 0.0, 1.0),
        mp.Arrival("zoë", "pet name: café", 0.0, 0.0, 1.0),
    ]
    chart = mp.draw_timeline(arrivals, 1.0, 2, encoding="ascii").splitlines()
    assert [row[:20].rstrip() for row in chart[1:3]] == ["7", "zo\\xeb"]
    assert chart[1].index("=") == chart[2].index("=") == 20
    assert chart[3].startswith("2 lookups of 1.0 s")
    one = mp.draw_timeline(arrivals[:1], 1.0, 1).splitlines()
    assert one[2].startswith("1 lookup of 1.0 s = 1.0 s of work")


def test_work_cpu_is_judged_against_the_cores_this_process_may_use(capfd):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("needs os.sched_setaffinity")
    allowed = os.sched_getaffinity(0)
    before = os.times()
    try:
        os.sched_setaffinity(0, {min(allowed)})  # one core, whatever cpu_count() says
        assert mp.main(["--work", "cpu", "--delay", "0.03", "--timeline"]) == 0
    finally:
        os.sched_setaffinity(0, allowed)
    cpu = sum(after - then for after, then in zip(os.times()[:4], before[:4]))
    assert cpu >= 0.9 * 10 * 0.03  # the lookups computed, workers' time included
    chart = posts_lines(capfd.readouterr().out)
    assert SUMMARY.fullmatch(chart[-2]).group(6) == "1"
    assert mp.main(["--work", "cpu", "--delay", "0.03", "--timeline"]) == 0
    chart = posts_lines(capfd.readouterr().out)
    assert SUMMARY.fullmatch(chart[-2]).group(6) == str(min(10, len(allowed)))


# Failures in a lookup, from Python


@pytest.mark.parametrize(
    "how, what_happened",
    [
        ("raise", "raised LookupError: no record of sylvester"),
        ("exit", "exited with status 3"),
        ("exit0", "ended without sending its result"),
        ("kill", "was killed by SIGKILL"),
        ("rt", "was killed by SIGRTMIN+6"),
    ],
    ids=["raise", "exit", "exit0", "kill", "rt"],
)
def test_a_failed_lookup_ends_the_run_within_a_second(
    start_method, how, what_happened, tmp_path
):
    stamp = tmp_path / "failed-at"
    people = {**THREE, "steve": {"pet_name": f"fail:{how}:{stamp}"}}
    # The other lookups would take 60 s: far past this test's time limit.
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(people, 60, start_method, lookups.failing)
    noticed_after = time.monotonic() - float(stamp.read_text())
    assert str(caught.value) == f"lookup for 'steve' {what_happened}"
    assert caught.value.person == "steve"
    quick(noticed_after, 1.0, "ending the run after the failure")
    assert multiprocessing.active_children() == []


def test_the_workers_traceback_is_the_cause_of_the_error():
    people = {"steve": {"pet_name": "raises-deep"}}
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(people, 0, "spawn", lookups.misbehaving)
    assert (
        str(caught.value) == "lookup for 'steve' raised KeyError: 'the record is gone'"
    )
    original = caught.value.__cause__
    assert isinstance(original, KeyError) and original.args == ("the record is gone",)
    remote = original.__cause__
    assert isinstance(remote, mp.RemoteTraceback)
    assert str(remote).count("in deep_failure") == 4  # where the lookup failed
    assert "lookups.py" in str(remote)


@pytest.mark.parametrize(
    "pet_name, what_happened",
    [
        ("twice", "put a second result"),
        ("caught", "put a second result"),
        ("unpicklable", "put a result that cannot be pickled (TypeError: "),
        ("unimportable", "put a result the parent cannot unpickle ("),
        (
            "returns",
            "ended without putting a result (it returned 'pet name: returned' ",
        ),
    ],
    ids=["twice", "caught", "unpicklable", "unimportable", "returns"],
)
def test_a_bad_put_is_named_with_its_person(pet_name, what_happened):
    people = {"steve": {"pet_name": pet_name}}
    arrivals: list[mp.Arrival] = []
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(people, 0, "fork", lookups.misbehaving, arrivals=arrivals)
    assert str(caught.value).startswith(f"lookup for 'steve' {what_happened}")
    # A first result that arrived before the failure is kept.
    kept = {"twice": ["pet name: once"], "caught": ["pet name: first"]}
    assert [arrival.result for arrival in arrivals] == kept.get(pet_name, [])
    assert multiprocessing.active_children() == []


def test_a_lookup_puts_just_its_result_as_in_the_post():
    people = {"adam": {"pet_name": "bare"}}
    assert mp.find_pet_names(people, 0, "fork", lookups.misbehaving) == [
        "pet name: bare"
    ]


def test_a_lambda_cannot_go_to_spawned_workers_and_says_so():
    with pytest.raises(mp.CannotStartError) as caught:
        mp.find_pet_names(THREE, 0, "spawn", lambda pet_name, output, delay: None)
    assert "cannot be sent to spawn workers" in str(caught.value)
    assert "define it at the top level of a module" in str(caught.value)
    assert multiprocessing.active_children() == []


def test_a_lookup_under_the_main_guard_gives_one_clear_line(tmp_path):
    script = tmp_path / "mine.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import mp\n"
        "if __name__ == '__main__':\n"
        "    def mine(pet_name, output, delay):\n"
        "        output.put(pet_name)\n"
        "    for method in ('spawn', 'forkserver'):\n"
        "        try:\n"
        "            mp.find_pet_names(mp.load_pet_maps(), 0, method, mine)\n"
        "        except mp.CannotStartError as error:\n"
        "            print(error)\n"
    )
    outcome = run(
        str(script),
        program="import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')",
    )
    assert outcome.stderr == ""
    for method, line in zip(
        ("spawn", "forkserver"), outcome.stdout.splitlines(), strict=True
    ):
        assert line.startswith(
            f"{method} workers cannot load the lookup (AttributeError: "
        )
        assert line.endswith(
            "not as a lambda, a nested function or under `if __name__ == '__main__':`"
        )


@pytest.mark.timeout(15)
def test_a_worker_killed_halfway_through_a_large_result_ends_the_run(start_method):
    # The parent has read part of a 20 MB message whose sender is gone: reading
    # the rest, as the queue's get() would, would wait forever.
    people = {"adam": {"pet_name": "max"}}
    started = time.monotonic()
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(people, 0, start_method, lookups.half_a_message)
    assert str(caught.value) == "lookup for 'adam' was killed by SIGKILL"
    quick(time.monotonic() - started, 5, "the run")


def test_results_of_a_megabyte_each_come_back_intact(start_method):
    # Joining before reading deadlocks once the results outgrow the pipe (64 KB on Linux).
    results = mp.find_pet_names(THREE, 0, start_method, lookups.big)
    expected = [f"pet name: {e['pet_name'] * 2**20}" for e in THREE.values()]
    assert sorted(results) == sorted(expected)


def test_a_worker_that_lingers_after_its_result_is_stopped_with_a_warning(monkeypatch):
    monkeypatch.setattr(mp, "LINGER", 0.3)  # 1 s in a real run
    people = {"adam": {"pet_name": "max"}, "steve": {"pet_name": "lingers"}}
    started = time.monotonic()
    with pytest.warns(RuntimeWarning) as warned:
        results = mp.find_pet_names(people, 0, "fork", lookups.lingering)
    took = time.monotonic() - started
    assert sorted(results) == ["pet name: lingers", "pet name: max"]
    assert [str(w.message) for w in warned] == [
        (
            f"the worker for 'steve' had not exited {mp.LINGER:g} s after sending its "
            "result, so it was stopped"
        )
    ]
    assert mp.LINGER <= took
    quick(took, mp.LINGER + 1.0, "the run")
    assert multiprocessing.active_children() == []


def test_the_command_line_says_a_lingering_worker_was_stopped(
    monkeypatch, tmp_path, capfd
):
    (tmp_path / "pets.py").write_text("pet_maps = {'steve': {'pet_name': 'lingers'}}\n")
    monkeypatch.setattr(mp, "PETS", tmp_path / "pets.py")
    monkeypatch.setattr(mp, "get_pet_name", lookups.lingering)
    monkeypatch.setattr(mp, "LINGER", 0.3)  # 1 s in a real run
    assert mp.main(["--delay", "0", "--start-method", "fork"]) == 0
    printed = capfd.readouterr()
    assert printed.out == "consuming from queue:\n['pet name: lingers']\n"
    assert printed.err == (
        "mp.py: warning: the worker for 'steve' had not exited 0.3 s after sending "
        "its result, so it was stopped\n"
    )


def test_a_stuck_lookup_is_noticed_while_results_keep_arriving(tmp_path):
    # A hundred results, 20 ms apart, keep the parent busy past the time limit.
    stamp = tmp_path / "stuck-at"
    people = {f"p{n}": {"pet_name": f"pet{n}"} for n in range(100)}
    people["p0"] = {"pet_name": f"stuck:{stamp}"}
    arrivals: list[mp.Arrival] = []
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(people, 0, "fork", lookups.staggered, 0.5, arrivals)
    late = time.monotonic() - float(stamp.read_text()) - 0.5
    assert str(caught.value) == "lookup for 'p0' ran past the time limit of 0.5 s"
    # Noticed while the others were still coming: not after all 99 had arrived.
    assert len(arrivals) < 70
    quick(late, 0.5, "noticing the overrun, after the limit,")


def test_the_time_limit_counts_from_the_lookup_and_start_up_has_its_own(monkeypatch):
    # A spawned worker imports its lookup's module first: 0.4 s, for this one.
    slow = importlib.import_module("slow_lookups")
    one = {"adam": {"pet_name": "max"}}
    assert mp.find_pet_names(one, 0.1, "spawn", slow.answer, 0.25) == ["pet name: max"]
    monkeypatch.setattr(mp, "START_LIMIT", 0.2)
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(one, 0.1, "spawn", slow.answer)
    assert str(caught.value) == "lookup for 'adam' did not start within 0.2 s"
    assert multiprocessing.active_children() == []


def test_a_lookup_over_its_time_limit_fails_and_one_under_it_does_not():
    # 0.3 s: past the limit, and short of twice the limit.
    people = {"adam": {"pet_name": "max:0"}, "steve": {"pet_name": "sylvester:0.3"}}
    arrivals: list[mp.Arrival] = []
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(people, 0, "fork", lookups.in_reverse, 0.2, arrivals)
    assert str(caught.value) == "lookup for 'steve' ran past the time limit of 0.2 s"
    assert [arrival.result for arrival in arrivals] == ["pet name: max"]


def test_running_workers_are_stopped_with_sigterm_first(monkeypatch):
    started = []
    real_start = multiprocessing.process.BaseProcess.start

    def start(self):
        real_start(self)
        started.append(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    with pytest.raises(mp.PetLookupError):
        mp.find_pet_names(THREE, 60, "fork", timeout=0.3)
    assert [process.exitcode for process in started] == [-signal.SIGTERM] * 3


def test_a_result_already_in_the_pipe_when_ctrl_c_comes_is_kept():
    arrivals: list[mp.Arrival] = []
    with pytest.raises(KeyboardInterrupt):
        mp.find_pet_names(
            {"adam": {"pet_name": "max"}},
            0,
            "fork",
            lookups.put_then_ctrl_c,
            None,
            arrivals,
        )
    assert [arrival.result for arrival in arrivals] == ["pet name: max"]


def test_results_left_in_the_pipe_are_kept_when_the_run_ends():
    # Ended by an error, a signal or a time limit, the run still keeps the
    # results that had reached the pipe: they arrived before it ended.
    reader, writer = multiprocessing.Pipe(duplex=False)
    arrivals: list[mp.Arrival] = []
    supervisor = mp.Supervisor(multiprocessing.get_context("fork"), None, arrivals)
    supervisor.pipe = reader
    supervisor.add("adam", multiprocessing.Process())  # not started
    writer.send((0, "started", 0.0))  # framed as the queue's feeder thread does
    writer.send((0, "result", pickle.dumps("pet name: max")))
    supervisor.stop()
    assert [arrival.result for arrival in arrivals] == ["pet name: max"]


def test_the_stop_signals_are_held_while_a_message_is_acted_on(monkeypatch):
    # Otherwise a Ctrl-C could come between taking a message out of the bytes
    # read and recording it, and a result already read would be lost.
    masks = []
    acting = mp.Supervisor.on_message

    def on_message(self, *message):
        masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        acting(self, *message)

    monkeypatch.setattr(mp.Supervisor, "on_message", on_message)
    assert mp.find_pet_names({"adam": {"pet_name": "max"}}, 0, "fork") == [
        "pet name: max"
    ]
    assert masks and all(set(mp.STOP_SIGNALS) <= mask for mask in masks)


@LINUX_ONLY
def test_closed_standard_files_do_not_go_to_the_queue(start_method):
    # Started with stdin and stdout closed (a daemon, some cron set-ups), the
    # queue's pipe would take their numbers: spawned workers would then write
    # their lines into the pipe, or close it as their stdin.
    program = (
        "import sys, mp\n"
        "people = {'adam': {'pet_name': 'max'}, 'steve': {'pet_name': 'sylvester'}}\n"
        "print(mp.find_pet_names(people, 0, sys.argv[1]), file=sys.stderr)\n"
    )
    outcome = run(start_method, program=program, shell="<&- >&-", limit=5)
    assert outcome.status == 0, outcome.stderr
    assert sorted(ast.literal_eval(outcome.stderr)) == [
        "pet name: max",
        "pet name: sylvester",
    ]


@LINUX_ONLY
def test_a_worker_whose_child_holds_its_files_is_still_seen_to_exit():
    # The `sleep` would hold the pipe behind the worker's sentinel, and hide
    # its exit, had the worker not marked multiprocessing's pipes as its own.
    seconds = f"{64 + os.getpid() % 1000 / 1000:.3f}"
    one = {"adam": {"pet_name": seconds}}
    with pytest.raises(mp.PetLookupError) as caught:
        mp.find_pet_names(one, 0, "spawn", lookups.child_then_exit)
    assert str(caught.value) == "lookup for 'adam' ended without sending its result"
    assert wait_for(lambda: not leftover_sleeps(seconds) or None, "the sleep ending", 1)


@LINUX_ONLY
def test_multiprocessings_helpers_keep_sighup_held():
    # The resource tracker and the fork server, started while the parent held
    # the stop signals, keep SIGHUP held: a closing terminal does not kill them.
    program = (
        "import multiprocessing.forkserver as forkserver\n"
        "import multiprocessing.resource_tracker as tracker\n"
        "import mp\n"
        "mp.find_pet_names({'adam': {'pet_name': 'max'}}, 0, 'forkserver')\n"
        "for pid in (tracker._resource_tracker._pid, forkserver._forkserver._forkserver_pid):\n"
        "    status = open(f'/proc/{pid}/status').read().splitlines()\n"
        "    print(next(line for line in status if line.startswith('SigBlk:')).split()[1])\n"
    )
    outcome = run(program=program)
    assert outcome.status == 0, outcome.stderr
    tracker, server = (int(mask, 16) for mask in outcome.stdout.split()[-2:])
    assert tracker & bit(signal.SIGHUP)
    assert server & bit(signal.SIGHUP) and server & bit(signal.SIGTERM)


@pytest.mark.parametrize("then", ["timeout", "another-fails", "ctrl-c-twice"])
def test_a_worker_that_ignores_sigterm_is_killed_within_a_second(
    then, tmp_path, monkeypatch
):
    monkeypatch.setattr(mp, "GRACE", 0.2)  # 0.5 s in a real run
    stamp = tmp_path / "stuck-at"
    how = "stuck-ctrl-c" if then == "ctrl-c-twice" else "stuck"
    people = {"steve": {"pet_name": f"{how}:{stamp}"}}
    if then == "another-fails":
        people["adam"] = {"pet_name": f"fails:{stamp}"}
    timeout = 0.2 if then == "timeout" else None
    raised = KeyboardInterrupt if then == "ctrl-c-twice" else mp.PetLookupError
    with pytest.raises(raised):
        mp.find_pet_names(people, 0, "fork", lookups.stuck, timeout=timeout)
    ended_after = time.monotonic() - float(stamp.read_text())
    quick(ended_after, (timeout or 0) + 1.0, "ending the run, after it got stuck,")
    # The second Ctrl-C came during the clean-up, and did not cut it short.
    assert multiprocessing.active_children() == []


def test_nothing_a_lookup_started_outlives_its_worker_or_the_run(
    start_method, tmp_path, monkeypatch
):
    # A lookup that leaves a `sleep` (subprocess) and a forked copy of itself
    # behind, whether it returns, or runs past its time limit.
    monkeypatch.setattr(mp, "LINGER", 0.3)  # 1 s in a real run
    seconds = f"{61 + os.getpid() % 1000 / 1000:.3f}"  # this test's own sleeps
    pids = tmp_path / "forked"
    people = {"adam": {"pet_name": f"{seconds}:{pids}"}}
    with warnings.catch_warnings():
        # The forked copy holds all the worker's files, the pipe behind its
        # sentinel included: its exit is still seen, and not taken to linger.
        warnings.simplefilter("error")
        results = mp.find_pet_names(people, 0, start_method, lookups.with_children)
    assert results == [f"pet name: {seconds}"]
    assert wait_for(lambda: children_gone(seconds, pids), "the children ending", 1)
    pids.unlink()
    with pytest.raises(mp.PetLookupError):
        mp.find_pet_names(people, 60, start_method, lookups.with_children, timeout=0.3)
    assert wait_for(lambda: children_gone(seconds, pids), "the children ending", 1)


def test_a_lookups_children_start_with_the_default_signal_actions(start_method):
    one = {"adam": {"pet_name": "max"}}
    with mp.stop_signals_handled():  # as in main(), which sets its own handlers
        [(ignored, blocked)] = mp.find_pet_names(
            one, 0, start_method, lookups.children_signals
        )
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        assert not ignored & bit(number), signal.Signals(number).name
    assert blocked == 0


def test_each_worker_leads_a_process_group_of_its_own(start_method):
    [(group, parents_group)] = mp.find_pet_names(
        {"adam": {"pet_name": "max"}}, 0, start_method, lookups.process_group
    )
    assert group != parents_group == os.getpgid(0)


# The command line: signals


def ctrl_c(script: int) -> None:
    """What a terminal does on Ctrl-C: SIGINT to its foreground process group."""
    os.killpg(script, signal.SIGINT)


@LINUX_ONLY
@pytest.mark.timeout(20)
def test_ctrl_c_at_any_moment_stops_everything_with_one_line(start_method):
    moments = [0.0, 0.1, 0.2, 0.3, "workers"]
    args = ("--delay", "60", "--start-method", start_method)
    outcomes = side_by_side(
        *(
            lambda w=when: run(*args, people=THREE, act=ctrl_c, when=w)
            for when in moments
        )
    )
    for when, outcome in zip(moments, outcomes):
        assert (outcome.status, outcome.stdout, outcome.stderr) == (
            130,
            "",
            "mp.py: interrupted\n",
        ), f"Ctrl-C at {when}"
        quick(outcome.took, 1.0, f"Ctrl-C at {when}: exiting")
        assert outcome.left == {}, f"Ctrl-C at {when}: processes left behind"


@LINUX_ONLY
@pytest.mark.timeout(20)
def test_signals_to_the_script_or_its_group_stop_everything_with_one_line(start_method):
    def to_script(number):
        return lambda script: os.kill(script, number)

    def twice(script):  # as `timeout` and some supervisors do
        os.kill(script, signal.SIGTERM)
        time.sleep(0.005)
        os.killpg(script, signal.SIGTERM)

    def kill_a_worker(script):
        os.kill(workers_up(script)[0], signal.SIGKILL)

    args = ("--delay", "60", "--start-method", start_method)
    scenarios = {
        "SIGTERM": (to_script(signal.SIGTERM), 143, "mp.py: stopped by SIGTERM"),
        "SIGHUP": (to_script(signal.SIGHUP), 129, "mp.py: stopped by SIGHUP"),
        "SIGHUP to the group": (
            lambda script: os.killpg(script, signal.SIGHUP),
            129,
            "mp.py: stopped by SIGHUP",
        ),
        "two SIGTERMs": (twice, 143, "mp.py: stopped by SIGTERM"),
        "two SIGTERMs again": (twice, 143, "mp.py: stopped by SIGTERM"),
        "a worker killed": (kill_a_worker, 1, "mp.py: error: lookup for '"),
    }
    outcomes = side_by_side(
        *(
            lambda a=s[0]: run(*args, people=THREE, act=a, when="workers")
            for s in scenarios.values()
        ),
        # multiprocessing alone leaves the workers running when their parent is killed.
        lambda: run(
            *args,
            people=THREE,
            act=to_script(signal.SIGKILL),
            when="workers",
            within=2.0,
        ),
    )
    for (name, (_, status, line)), outcome in zip(scenarios.items(), outcomes):
        assert (outcome.status, outcome.stdout) == (status, ""), name
        assert only_line(outcome).startswith(line), name
        # Workers running a lookup stop at SIGTERM at once: no grace period.
        quick(outcome.took, mp.GRACE, f"{name}: exiting")
        assert outcome.left == {}, f"{name}: processes left behind"
    assert only_line(outcomes[5]).endswith(" was killed by SIGKILL")
    assert outcomes[-1].status == -signal.SIGKILL
    assert outcomes[-1].left == {}, "workers outlived the killed script by 2 s"


@LINUX_ONLY
def test_a_signal_the_run_was_started_with_ignored_stays_ignored():
    # nohup starts a program with SIGHUP ignored, so that a closing terminal
    # does not end it: neither the script nor its workers may stop for it.
    def hang_up(script):
        for pid in processes_of(script):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    plain, nohup = side_by_side(
        lambda: run("--delay", "0.3", people=THREE, act=hang_up, when="workers"),
        lambda: run(
            "--delay",
            "0.3",
            people=THREE,
            act=hang_up,
            when="workers",
            prefix=["nohup"],
        ),
    )
    assert (plain.status, only_line(plain)) == (129, "mp.py: stopped by SIGHUP")
    assert (nohup.status, nohup.stderr) == (0, "")
    assert posts_lines(nohup.stdout, THREE) == []


@LINUX_ONLY
@pytest.mark.timeout(20)
def test_a_lookups_children_end_with_the_run_on_ctrl_c_sigterm_or_sigkill(
    start_method, tmp_path
):
    signals = {
        "Ctrl-C": signal.SIGINT,
        "SIGTERM": signal.SIGTERM,
        "SIGKILL": signal.SIGKILL,
    }
    base = 62 + os.getpid() % 1000 / 1000
    cases = {  # each its own sleep, and file for its forked copy's pid
        name: (f"{base + n / 10:.3f}", tmp_path / f"forked-{n}")
        for n, name in enumerate(signals)
    }

    def program(seconds: str, pids: Path) -> str:
        return (
            "import sys; sys.path.insert(0, '.ci')\n"
            "import mp, lookups\n"
            "with mp.stop_signals_handled():\n"
            f"    mp.find_pet_names({{'adam': {{'pet_name': '{seconds}:{pids}'}}}}, 60, "
            f"'{start_method}', lookups.with_children)\n"
        )

    def once_the_children_are_up(name: str):
        def act(script):
            seconds, pids = cases[name]
            wait_for(
                lambda: pids.exists() and pids.read_text() and leftover_sleeps(seconds),
                "the children",
            )
            if signals[name] == signal.SIGINT:
                ctrl_c(script)
            else:
                os.kill(script, signals[name])

        return act

    outcomes = side_by_side(
        *(
            lambda n=name: run(
                program=program(*cases[n]), act=once_the_children_are_up(n), within=2.0
            )
            for name in signals
        )
    )
    for name, outcome in zip(signals, outcomes):
        assert outcome.left == {}, f"{name}: processes left behind"
        assert children_gone(*cases[name]), f"{name}: the lookup's children live on"


@LINUX_ONLY
def test_a_terminal_that_stops_background_writers_does_not_stop_the_workers():
    # Under `stty tostop` a terminal stops a process that writes to it from a
    # group other than its foreground one, as each worker's is.
    outcome = run("--delay", "0", "--start-method", "fork", stdout="terminal tostop")
    assert (outcome.status, outcome.stderr) == (0, "")
    assert posts_lines(outcome.stdout) == []


@LINUX_ONLY
def test_timeout_from_the_command_line_names_the_person_and_the_limit():
    outcome = run("--delay", "60", "--timeout", "0.2", people=THREE)
    assert (outcome.status, outcome.stdout) == (1, "")
    assert re.fullmatch(  # the first to start, and so the first past its limit
        r"mp.py: error: lookup for '(adam|steve|michelle)' ran past the time limit "
        r"of 0.2 s",
        only_line(outcome),
    )
    assert outcome.took >= 0.2
    quick(outcome.took, 0.2 + 1.0 + 0.5, "the run (with Python's start-up)")


def test_results_that_arrived_are_printed_even_when_the_run_fails(monkeypatch, capfd):
    monkeypatch.setattr(mp, "get_pet_name", lookups.one_slow)
    assert mp.main(["--delay", "0", "--timeout", "0.2", "--start-method", "fork"]) == 1
    printed = capfd.readouterr()
    lines = printed.out.splitlines()
    assert lines[0] == "consuming from queue:"
    assert collections.Counter(
        ast.literal_eval(lines[1])
    ) == EXPECTED - collections.Counter(["pet name: sylvester"])
    assert (
        printed.err
        == "mp.py: error: lookup for 'steve' ran past the time limit of 0.2 s\n"
    )


# The command line: streams, options and interpreters

CLOSED = "mp.py: error: stdout is closed (as by >&-), so the results have nowhere to go"


@LINUX_ONLY
def test_closed_or_full_streams_give_one_line_or_none(start_method):
    args = ("--delay", "0", "--start-method", start_method)
    cases = {  # shell redirection: status, the post's lines printed, stderr
        "<&- >&-": (1, False, CLOSED + "\n"),
        ">&-": (1, False, CLOSED + "\n"),
        "<&-": (0, True, ""),
        "2>&-": (0, True, ""),
        ">/dev/full": (
            1,
            False,
            "mp.py: error: cannot write to stdout: No space left on device\n",
        ),
    }
    reader, writer = os.pipe()
    os.close(reader)  # a pipe whose reader has gone: every write to it fails
    line = " ".join(shlex.quote(part) for part in [sys.executable, "mp.py", *args])
    try:
        outcomes = side_by_side(
            *(lambda s=shell: run(*args, people=THREE, shell=s) for shell in cases),
            lambda: run(*args, people=THREE, shell=f">&{writer}", pass_fds=(writer,)),
            # `python3 mp.py | head -1`: head leaves after the first line.
            lambda: run(
                command=["bash", "-c", f"{line} | head -1; exit ${{PIPESTATUS[0]}}"],
                people=THREE,
            ),
        )
    finally:
        os.close(writer)
    for (shell, (status, printed, stderr)), outcome in zip(cases.items(), outcomes):
        assert (outcome.status, outcome.stderr, outcome.left) == (status, stderr, {}), (
            shell
        )
        if printed:
            assert posts_lines(outcome.stdout, THREE) == [], shell
    closed, head = outcomes[-2:]
    assert (closed.status, closed.stderr, closed.left) == (1, "", {})
    assert (head.status, head.stdout, head.stderr, head.left) == (
        1,
        "adding to queue\n",
        "",
        {},
    )


@LINUX_ONLY
def test_interpreter_options_and_an_ascii_stdout():
    # -OO drops docstrings; -I, -P and PYTHONSAFEPATH leave the script's folder,
    # where pets.py is, off the import path. Spawned workers get the same options.
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    options = {"-OO": (["-OO"], plain), "-I": (["-I"], plain)}
    if hasattr(sys.flags, "safe_path"):  # -P and PYTHONSAFEPATH came with 3.11
        options["-P"] = (["-P"], plain)
        options["PYTHONSAFEPATH=1"] = ([], {**plain, "PYTHONSAFEPATH": "1"})
    args = ["mp.py", "--delay", "0", "--start-method", "spawn"]
    names = {"zoë": {"pet_name": "café"}}
    ascii_only = {**plain, "PYTHONIOENCODING": "ascii"}
    outcomes = side_by_side(
        *(
            lambda o=option, e=env: run(
                command=[sys.executable, *o, *args], env=e, people=THREE
            )
            for option, env in options.values()
        ),
        lambda: run("--delay", "0", "--timeline", people=names, env=ascii_only),
    )
    for name, outcome in zip(options, outcomes):
        assert (outcome.status, outcome.stderr) == (0, ""), name
        assert posts_lines(outcome.stdout, THREE) == [], name
    ascii_run = outcomes[-1]
    assert (ascii_run.status, ascii_run.stderr) == (0, "")
    lines = ascii_run.stdout.splitlines()
    assert lines[:3] == [
        "adding to queue",
        "consuming from queue:",
        "['pet name: caf\\xe9']",
    ]
    assert lines[4].startswith("zo\\xeb              -")


def older_python() -> str | None:
    """A CPython older than 3.10 on this machine, if there is one (pyenv's, say)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = [*sorted(root.glob("3.[6-9].*/bin/python3"), reverse=True)]
    found += [shutil.which(f"python3.{minor}") for minor in (9, 8, 7, 6)]
    for candidate in found:
        if (
            candidate
            and "shims" not in str(candidate)
            and os.access(candidate, os.X_OK)
        ):
            return str(candidate)
    return None


@pytest.mark.skipif(older_python() is None, reason="no Python older than 3.10 found")
def test_an_older_python_gets_one_line_naming_what_is_needed():
    outcome = run(command=[older_python(), "mp.py"])
    assert (outcome.status, outcome.stdout) == (1, "")
    assert re.fullmatch(
        r"mp\.py needs Python 3\.10 or newer on Linux, macOS or another POSIX system; "
        r"this is Python 3\.[6-9]\.\d+ on linux",
        only_line(outcome),
    )


# Bad input


@pytest.fixture
def forbid_process_start(monkeypatch):
    """Make any attempt to start a process fail the test."""

    def start(self):
        pytest.fail(f"a process was started: {self}")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)


@pytest.mark.parametrize(
    "bad_entry, shown",
    [
        ({"name": "sylvester"}, "{'name': 'sylvester'}"),
        ({"pet_name": 7}, "{'pet_name': 7}"),
        ("sylvester", "'sylvester'"),
    ],
    ids=["no-pet_name", "pet_name-not-a-string", "not-a-mapping"],
)
def test_a_bad_entry_is_named_before_any_process_starts(
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


@pytest.mark.parametrize("what", ["delay", "timeout"])
@pytest.mark.parametrize(
    "value", [-1, float("nan"), float("inf"), 1e10, 86400.5, "soon"]
)
def test_a_bad_delay_or_timeout_is_refused_up_front(what, value, forbid_process_start):
    with pytest.raises(ValueError) as caught:
        mp.find_pet_names(pet_maps, **{"delay": 0, what: value})
    assert str(caught.value) == (
        f"{what} must be a number of seconds from 0 to 86400, not {value!r}"
    )


def test_the_longest_delay_and_timeout_are_accepted():
    assert mp.seconds("86400", "delay") == mp.MAX_SECONDS == 86400
    assert mp.seconds(0, "timeout") == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--delay", "-1"],
            "argument --delay: must be a number of seconds from 0 to 86400, not '-1'",
        ),
        (
            ["--delay", "1e10"],
            "argument --delay: must be a number of seconds from 0 to 86400, not '1e10'",
        ),
        (
            ["--delay", "soon"],
            "argument --delay: must be a number of seconds from 0 to 86400, not 'soon'",
        ),
        (
            ["--timeout", "nan"],
            "argument --timeout: must be a number of seconds from 0 to 86400, not 'nan'",
        ),
        (["--work", "gpu"], "argument --work: invalid choice: 'gpu'"),
        (
            ["--start-method", "thread"],
            "argument --start-method: invalid choice: 'thread'",
        ),
    ],
    ids=["negative", "too-long", "not-a-number", "nan", "no-gpu", "no-thread"],
)
def test_a_bad_command_line_gets_argparse_error_and_status_2(args, message, capsys):
    with pytest.raises(SystemExit) as caught:
        mp.main(args)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_every_option_in_plain_sentences(capsys):
    with pytest.raises(SystemExit) as caught:
        mp.main(["--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    default = multiprocessing.get_start_method(allow_none=True) or START_METHODS[0]
    for option in [
        "--delay SECONDS how long each lookup takes, in seconds (default: 2)",
        (
            "--work {sleep,cpu} sleep: each lookup waits, as in the post (the "
            "default); cpu: each lookup computes for that long instead"
        ),
        "--start-method {" + ",".join(START_METHODS) + "} how to start the worker "
        f"processes (default: this Python's default here, which is {default})",
        (
            "--timeout SECONDS end the run if a lookup takes longer than this, "
            "counted from when the lookup starts (default: no limit, as in the post)"
        ),
        "--timeline after the results, draw when each worker started",
    ]:
        assert option in text
    assert "None" not in text


@pytest.mark.parametrize(
    "pets, line",
    [
        ("pet_maps = {}\n\nx = = 1\n", "line 3: SyntaxError: invalid syntax"),
        (
            "import os\n\nraise RuntimeError('broken on purpose')\n",
            "line 3: RuntimeError: broken on purpose",
        ),
        (
            "def f():\n    return 1 / 0\n\nf()\n",
            "line 2: ZeroDivisionError: division by zero",
        ),
        ("pets = {}\n", "it defines no pet_maps"),
        ("pet_maps = ['adam']\n", "pet map must be a mapping, not list"),
        (
            "pet_maps = {'adam': {'name': 'max'}}\n",
            "'adam' needs an entry like {'pet_name': 'max'}, got {'name': 'max'}",
        ),
        (None, "cannot read it: No such file or directory"),
    ],
    ids=[
        "syntax-error",
        "raises",
        "raises-deeper",
        "no-pet_maps",
        "not-a-mapping",
        "bad-entry",
        "missing",
    ],
)
def test_a_broken_pets_py_gives_one_line_naming_it(
    pets, line, tmp_path, monkeypatch, capfd
):
    path = tmp_path / "pets.py"
    if pets is not None:
        path.write_text(pets)
    monkeypatch.setattr(mp, "PETS", path)
    monkeypatch.setattr(
        multiprocessing.process.BaseProcess, "start", None
    )  # nothing starts
    assert mp.main(["--delay", "0"]) == 1
    printed = capfd.readouterr()
    assert printed.out == ""
    assert printed.err.startswith(f"mp.py: error in pets.py: {line}")
    assert printed.err.count("\n") == 1


# Limits of the machine


def refused(outcome: Outcome, line: str) -> None:
    """The run refused before starting anything, with one line matching `line`."""
    assert (outcome.status, outcome.stdout, outcome.left) == (1, "", {})
    assert re.fullmatch(line, only_line(outcome)), outcome.stderr


def with_open_files_limit(limit: int, command: list[str]) -> list[str]:
    """The command run under `ulimit -n LIMIT`, as a user would; 256 is macOS's default."""
    return ["bash", "-c", f'ulimit -n {limit} && exec "$@"', "bash", *command]


@LINUX_ONLY
def test_more_people_than_open_files_allow_get_one_line():
    people = {f"person{n}": {"pet_name": f"pet{n}"} for n in range(200)}
    outcomes = side_by_side(
        *(
            lambda m=method: run(
                people=people,
                command=with_open_files_limit(
                    256, [sys.executable, "mp.py", "--delay", "60", "--start-method", m]
                ),
            )
            for method in START_METHODS
        )
    )
    for outcome in outcomes:
        refused(
            outcome,
            r"mp.py: error: 200 workers, one per person, need about \d+ open files, "
            r"but the limit is 256 \(ulimit -n\)",
        )


def pids_limit(limit: int):
    """A fresh cgroup (v1) that allows `limit` processes and threads, or None if this
    machine will not make one (it takes root, and cgroup v1's pids controller)."""
    folder = Path(f"/sys/fs/cgroup/pids/mp-test-{os.getpid()}-{limit}")
    try:
        folder.mkdir()
        (folder / "pids.max").write_text(str(limit))
    except OSError:
        return None
    return folder


@LINUX_ONLY
def test_more_people_than_the_process_limit_allows_get_one_line():
    cgroup = pids_limit(12)
    if cgroup is None:
        pytest.skip(
            "cannot make a cgroup with a pids limit here (needs root, cgroup v1)"
        )
    join = f'echo $$ > {cgroup}/cgroup.procs && exec "$@"'
    try:
        outcomes = side_by_side(
            *(
                lambda m=method: run(
                    command=[
                        "sh",
                        "-c",
                        join,
                        "sh",
                        sys.executable,
                        "mp.py",
                        "--start-method",
                        m,
                    ]
                )
                for method in START_METHODS
            )
        )
    finally:
        wait_for(
            lambda: not (cgroup / "cgroup.procs").read_text() or None, "empty cgroup"
        )
        cgroup.rmdir()
    for outcome in outcomes:
        refused(
            outcome,
            r"mp.py: error: 10 workers, one per person, need about 32 more processes "
            r"and threads, but the pids limit of 12 on this container leaves room for \d+",
        )


def test_the_process_limit_is_checked_against_every_limit_found(monkeypatch):
    monkeypatch.setattr(
        mp, "processes_left", lambda: iter([(40, "ulimit -u 50"), (31, "b")])
    )
    with pytest.raises(mp.CannotStartError) as caught:
        mp.check_processes(10)
    assert str(caught.value) == (
        "10 workers, one per person, need about 32 more processes and threads, "
        "but b leaves room for 31"
    )
    mp.check_processes(9)  # 29 needed: room enough
    monkeypatch.setattr(mp, "processes_left", lambda: iter([(-3, "ulimit -u 5")]))
    with pytest.raises(mp.CannotStartError, match="ulimit -u 5 leaves room for 0$"):
        mp.check_processes(1)
    mp.check_processes(0)  # nobody: nothing to start
    # Two limits too tight: the one that leaves less room is named.
    monkeypatch.setattr(mp, "processes_left", lambda: iter([(25, "a"), (20, "b")]))
    with pytest.raises(mp.CannotStartError, match="but b leaves room for 20$"):
        mp.check_processes(10)


def test_a_start_that_fails_stops_the_workers_and_lets_ctrl_c_back_in(monkeypatch):
    started = []
    real_start = multiprocessing.process.BaseProcess.start

    def start(self):
        if len(started) == 2:  # the third fails, as at the process limit
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        real_start(self)
        started.append(self)

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", start)
    with pytest.raises(mp.CannotStartError) as caught:
        mp.find_pet_names(pet_maps, 60, "fork")
    assert str(caught.value) == (
        "could not start a process for 'michelle': the limit on processes (ulimit -u, "
        "or a container's pids limit) is reached: [Errno 11] Resource temporarily unavailable"
    )
    assert [
        process.exitcode in (-signal.SIGTERM, -signal.SIGKILL) for process in started
    ] == [True, True]
    # The stop signals, held while each worker starts, are let in again.
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()


def test_a_worker_that_cannot_start_a_thread_gives_one_line(monkeypatch):
    # The limit on processes counts threads too: a worker may start, then fail
    # to start its threads. Forked workers inherit this broken Thread.start.
    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with pytest.raises(mp.CannotStartError) as caught:
        mp.find_pet_names(THREE, 60, "fork")
    assert re.fullmatch(  # whichever worker's exit the parent sees first
        r"the worker for '(adam|steve|michelle)' could not start a thread: the limit "
        r"on processes \(ulimit -u, or a container's pids limit\) is reached",
        str(caught.value),
    )
    assert multiprocessing.active_children() == []


def in_a_mount_namespace(mounts: str, command: str) -> list[str] | None:
    """The command run after `mounts`, in a mount namespace of its own (root only)."""
    probe = ["unshare", "--mount", "sh", "-c", mounts]
    try:
        made = subprocess.run(probe, check=False, capture_output=True, timeout=5)
    except FileNotFoundError:
        return None
    return [*probe[:-1], f"{mounts} && {command}"] if made.returncode == 0 else None


@LINUX_ONLY
def test_no_semaphores_or_no_temporary_folder_gives_one_line(tmp_path):
    # The interpreter itself, not a virtual environment's link to it, which may
    # be under the /tmp that is hidden below.
    python = shlex.quote(os.path.realpath(sys.executable))
    no_shm = in_a_mount_namespace(
        "mount -t tmpfs -o ro none /dev/shm", f"exec {python} mp.py --delay 0"
    )
    # Read-only /tmp, /var/tmp and working folder: forkserver has nowhere for its socket.
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(HERE / "mp.py", kit)
    shutil.copy(HERE / "pets.py", kit)
    read_only = " && ".join(
        [
            "mount -t tmpfs none /mnt",  # /mnt/kit: the kit, read-only, outside /tmp
            "mkdir /mnt/kit",
            f"mount --bind {shlex.quote(str(kit))} /mnt/kit",
            "mount -o remount,bind,ro /mnt/kit",
            "mount -t tmpfs -o ro none /tmp",
            "mount -t tmpfs -o ro none /var/tmp",
        ]
    )
    no_tmp = in_a_mount_namespace(
        read_only,
        f"cd /mnt/kit && exec env -u TMPDIR {python} mp.py --delay 0 "
        "--start-method forkserver",
    )
    if no_shm is None or no_tmp is None:
        pytest.skip("needs unshare and the right to mount (root on Linux)")
    shm, tmp = side_by_side(lambda: run(command=no_shm), lambda: run(command=no_tmp))
    assert (shm.status, shm.stdout, shm.left) == (1, "", {})
    assert only_line(shm) == (
        "mp.py: error: multiprocessing's Queue needs POSIX semaphores, and they are "
        "not available here ([Errno 30] Read-only file system)"
    )
    assert (tmp.status, tmp.stdout, tmp.left) == (1, "", {})
    assert only_line(tmp).startswith(
        "mp.py: error: could not start a process for 'adam': no writable temporary "
        "folder (set TMPDIR to one): [Errno 2] No usable temporary directory found in "
    )


# main() as a function


def test_main_puts_back_the_signal_handlers_it_found(capfd):
    def mine(number, frame):
        pass

    before = {number: signal.getsignal(number) for number in mp.STOP_SIGNALS}
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert mp.main(["--delay", "0"]) == 0
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
        assert signal.getsignal(signal.SIGHUP) is before[signal.SIGHUP]
    finally:
        signal.signal(signal.SIGTERM, previous)
    posts_lines(capfd.readouterr().out)


def test_main_runs_from_another_thread_without_touching_signals(capfd):
    before = {number: signal.getsignal(number) for number in mp.STOP_SIGNALS}
    statuses = []
    thread = threading.Thread(target=lambda: statuses.append(mp.main(["--delay", "0"])))
    thread.start()
    thread.join(timeout=8)
    assert statuses == [0]
    assert {number: signal.getsignal(number) for number in mp.STOP_SIGNALS} == before
    assert posts_lines(capfd.readouterr().out) == []


def test_a_stop_signal_ends_main_with_one_line_and_its_status(capfd):
    # The first stop signal raises Stopped; one that follows is ignored.
    def signal_twice(pet_name, output, delay):
        pass

    with mp.stop_signals_handled():
        with pytest.raises(mp.Stopped) as caught:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(1)  # the handler raises before this ends
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the first one counts
        time.sleep(0.01)
    assert caught.value.number == signal.SIGHUP
    assert mp.signal_name(signal.SIGRTMIN + 6) == "SIGRTMIN+6"
    assert mp.signal_name(signal.SIGKILL) == "SIGKILL"
    assert mp.signal_name(200) == "signal 200"


# The README


def readme_output(command: str) -> list[str]:
    """The lines a README output block shows after `$ COMMAND`."""
    blocks = re.findall(
        r"```\n\$ (.*?)\n(.*?)```", (HERE / "README.md").read_text(), re.DOTALL
    )
    shown = [
        lines.splitlines()
        for shown_command, lines in blocks
        if shown_command == command
    ]
    assert len(shown) == 1, f"README.md shows `{command}` {len(shown)} times"
    return shown[0]


def shape(lines: list[str]) -> list:
    """Lines with what varies from run to run taken out: figures, bar lengths, result order."""
    shaped = []
    for line in lines:
        if line.startswith("['pet name: "):
            shaped.append(collections.Counter(ast.literal_eval(line)))
            continue
        line = re.sub(r"'\w+'", "'NAME'", line)  # whose lookup overran first
        line = re.sub(r"\d+(\.\d+)?", "N", line)
        line = re.sub(r"N( +N)*", "N", line)  # the axis' ticks
        line = re.sub(r" *-*=+", " =", line)  # a row's bar
        shaped.append(re.sub(r" +", " ", line))
    return shaped


def patched(program: str, diff: str) -> str:
    """The program with a README diff applied: hunks separated by "...", each a run of
    lines that start with " " (kept), "-" (taken out) or "+" (put in)."""
    for hunk in diff.split("...\n"):
        lines = [line for line in hunk.splitlines() if line]
        old = "".join(line[1:] + "\n" for line in lines if line[0] in " -")
        new = "".join(line[1:] + "\n" for line in lines if line[0] in " +")
        assert program.count(old) == 1, f"the README's diff does not fit:\n{old}"
        program = program.replace(old, new)
    return program


def test_the_readmes_diff_is_the_corrected_program_against_the_posts():
    program = readme_block("corrected program").splitlines()
    old_name, new_name, hunk, *lines = readme_block("corrected diff").splitlines()
    assert (old_name, new_name) == ("--- the post", "+++ corrected")
    assert hunk.startswith("@@ ")
    # One hunk, the whole of both: its new side is the program, line for line.
    assert [line[1:] for line in lines if line[:1] in (" ", "+")] == program
    post = [line[1:] for line in lines if line[:1] in (" ", "-")]
    seed = HERE.parent / "shared" / "seed" / "000_b99ac5c1e08ba8a5.txt"
    if seed.exists():  # the post itself, where this checkout has it
        code = re.search(
            r"Our code:\n\n```python\n(.*?)```", seed.read_text(), re.DOTALL
        )
        assert post == code.group(1).splitlines()
    else:  # the post's code as the README quotes it: joined before it read
        assert post.index("    p.join()") < post.index(
            "results = [output.get() for p in processes]"
        )


@pytest.mark.timeout(15)
def test_the_readmes_outputs_and_its_three_pitfalls_show_what_happens(tmp_path):
    commands = [
        "python3 mp.py --delay 0.5 --timeline",
        "python3 mp.py --start-method spawn --delay 0.5 --timeline",
        "python3 mp.py --work cpu --delay 0.2 --timeline",
        "python3 mp.py --delay 5 --timeout 1",
    ]
    # The pitfalls, with the post's 2 s cut to 0.3 s: a run that has not ended
    # 1 s later, when the corrected program has, hangs.
    shutil.copy(HERE / "pets.py", tmp_path)
    program = readme_block("corrected program")
    demos = {"corrected": program}
    for number in (1, 2, 3):
        demos[f"pitfall {number}"] = patched(program, readme_block(f"pitfall {number}"))
    for name, code in demos.items():
        code = code.replace("time.sleep(2)", "time.sleep(0.3)")
        (tmp_path / f"{name.replace(' ', '_')}.py").write_text(code)

    def demo(name: str) -> Outcome:
        script = str(tmp_path / f"{name.replace(' ', '_')}.py")
        # Each line out at once, as in a terminal: the README's demos are run there.
        terminal_like = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = ["timeout", "1", sys.executable, script]
        return run(command=command, cwd=tmp_path, env=terminal_like)

    outcomes = side_by_side(
        *(lambda c=command: run(*shlex.split(c)[2:]) for command in commands),
        *(lambda n=name: demo(n) for name in demos),
    )
    for command, outcome in zip(commands, outcomes):
        printed = (outcome.stdout + outcome.stderr).splitlines()
        assert shape(printed) == shape(readme_output(command)), command
    corrected, join_first, died, no_guard = outcomes[len(commands) :]
    assert corrected.status == 0
    assert (join_first.status, join_first.stdout) == (124, "adding to queue\n" * 10)
    assert (died.status, died.stdout) == (124, "adding to queue\n" * 9)
    assert no_guard.status == 124
    # Each spawned worker's first start() fails so (all ten, given the README's 5 s).
    assert (
        "RuntimeError: \n        An attempt has been made to start a new process"
        in (no_guard.stderr)
    )
