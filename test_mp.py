"""Tests for mp.py: all ten pet names come back, once each, in about one delay.

The rest check each fix to the post, and the README's programs and demos. A bug
here usually shows up as a hang, so every test has a time limit, and every
command a test starts runs in a session of its own, killed whole at the end.
Timing checks compare the kit with plain processes timed beside it, so that a
busy machine slows both, or skip and say why; MP_TEST_TIMING=off skips them.
"""

import ast
import contextlib
import difflib
import json
import multiprocessing
import multiprocessing.process
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import pytest
import pytest_timeout  # noqa: F401  (the time limits below need it)

import mp
from pets import pet_maps

KIT = Path(__file__).resolve().parent
sys.path.insert(0, str(KIT / ".ci"))  # the test lookups, which workers import
import lookups

METHODS = multiprocessing.get_all_start_methods()
# Each interpreter's own: fork on Linux up to 3.13, forkserver from 3.14.
DEFAULT = "forkserver" if sys.version_info >= (3, 14) else "fork"
DELAY = mp.DELAY
# python3 mp.py as it is, and with each other start method.
RUNS = ["default", *[method for method in METHODS if method != DEFAULT]]
THREE = {person: pet_maps[person] for person in ("adam", "steve", "michelle")}
TIMING = os.environ.get("MP_TEST_TIMING", "on") != "off"

LINUX = pytest.mark.skipif(sys.platform != "linux", reason="only Linux is tested")
pytestmark = [pytest.mark.timeout(20), LINUX]  # the tests read /proc


# The suite's own set-up, and helpers


class Report(list):
    """Lines that the timed tests measured, printed at the end of the run."""

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.section("speedups measured by the timed tests")
        for line in self:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report(pytestconfig):
    """A Report, printed whether the tests pass or skip."""
    pytestconfig.pluginmanager.register(lines := Report(), "mp-speedups")
    return lines


@pytest.fixture(autouse=True)
def nothing_left_running():
    """Whatever a test does, its workers and commands do not outlive it."""
    yield
    for child in multiprocessing.active_children():
        child.kill()
        child.join()
    while Run.started:
        Run.started.pop().kill()


class Run:
    """A command in a session of its own, its output in files, which cannot fill
    up; wait() sets .status, .out, .err and .seconds from start to end."""

    started = []  # noqa: RUF012  (the runs to kill whole when the test ends)

    def __init__(self, *args, cwd=KIT, env=None, stdout=None, ignored=()):
        self.files = [tempfile.mkstemp() for _ in "12"]
        self.process = subprocess.Popen(
            [sys.executable, *map(str, args)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=stdout or self.files[0][0],
            stderr=self.files[1][0],
            text=True,
            start_new_session=True,
            preexec_fn=lambda: as_in_a_terminal(ignored),  # noqa: PLW1509
        )
        for fd, _ in self.files:
            os.close(fd)  # the command has its own copies
        self.pid, self.began, self.seconds = self.process.pid, time.monotonic(), None
        Run.started.append(self)

    def output(self):
        """What it has written so far: (stdout, stderr)."""
        return tuple(Path(path).read_text() for _, path in self.files)

    def ended(self):
        """Whether it has ended; the first time it has, how long it took."""
        if self.seconds is None and self.process.poll() is not None:
            self.seconds = time.monotonic() - self.began
        return self.seconds is not None

    def wait(self):
        """Wait for it to end; the test's time limit bounds the wait."""
        while not self.ended():
            time.sleep(0.005)
        self.status, (self.out, self.err) = self.process.returncode, self.output()
        return self

    def timed(self):
        """Under lookups.py's wrapper: the status, stdout, stderr and seconds."""
        err, _, seconds = self.wait().err.rstrip("\n").rpartition("\n")
        return self.status, self.out, err, float(seconds)

    def kill(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()
        for _, path in self.files:
            os.unlink(path)


def as_in_a_terminal(ignored):
    """The stop signals' default actions, as in a terminal, but `ignored`: mp.py
    keeps any it starts with ignored (nohup's SIGHUP, a background job's Ctrl-C)."""
    for number in mp.STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN if number in ignored else signal.SIG_DFL)


def run_all(commands, **keywords):
    """Run commands side by side, and wait for all; time each as it ends."""
    runs = [Run(*command, **keywords) for command in commands]
    while False in [run.ended() for run in runs]:
        time.sleep(0.005)
    return [run.wait() for run in runs]


def group(pid):
    """The live processes of the session that `pid` leads: {pid: (ppid, command)}."""
    members = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pid:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                members[int(entry.name)] = (int(fields[1]), command.decode())
    return members


def workers(pid):
    """The mp.py run `pid`'s workers, not its helpers: {pid: how it was started}."""
    found = {}
    for member, (parent, command) in group(pid).items():
        if member == pid or "resource_tracker" in command:
            continue
        if "forkserver import main" in command:  # the fork server, or its child
            found[member] = "forkserver" if parent != pid else None
        else:
            found[member] = "spawn" if "spawn_main" in command else "fork"
    return {member: how for member, how in found.items() if how}


def wait_for_workers(run, people=10, ignored=()):
    """Wait until all the run's workers have started, and all its handlers are back."""
    while True:
        assert not run.ended(), run.output()
        # Workers counted, then handlers back: the start is over, none mid-exec().
        started = len(workers(run.pid)) == people
        status = Path(f"/proc/{run.pid}/status").read_text()
        caught = int(re.search(r"SigCgt:\s*(\w+)", status)[1], 16)
        back = [caught >> n - 1 & 1 for n in mp.STOP_SIGNALS if n not in ignored]
        if started and all(back):
            return set(workers(run.pid).values())
        time.sleep(0.01)


def wait_until_gone(pid):
    """Wait for a session's last process to end, then assert nothing is left."""
    deadline = time.monotonic() + 10  # multiprocessing's helpers end after the parent
    while group(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert group(pid) == {}, "processes left running"


def check_post_lines(stdout, people=pet_maps):
    """The post's lines: an 'adding to queue' per lookup, then every result once."""
    names = [f"pet name: {entry['pet_name']}" for entry in people.values()]
    lines = stdout.splitlines()
    assert lines[: len(names)] == ["adding to queue"] * len(names)
    assert lines[len(names)] == "consuming from queue:"
    assert sorted(ast.literal_eval(lines[len(names) + 1])) == sorted(names)
    assert len(lines) == len(names) + 2


def readme_block(marker):
    """The code block after `<!-- marker -->` in the README, unindented."""
    block = rf"<!-- {marker} -->\n( *)```\w*\n(.*?)\n\1```"
    found = re.search(block, (KIT / "README.md").read_text(), re.DOTALL)
    assert found, f"README.md has no block after <!-- {marker} -->"
    return "".join(line[len(found[1]) :] + "\n" for line in found[2].split("\n"))


def apply_change(source, change):
    """Apply a change block: hunks of context, - and + lines, split by '...'."""
    for hunk in change.split("...\n"):
        lines = hunk.splitlines(keepends=True)
        removed = "".join(line[1:] for line in lines if line[0] in " -")
        added = "".join(line[1:] for line in lines if line[0] in " +")
        assert source.count(removed) == 1, f"the change does not fit:\n{removed}"
        source = source.replace(removed, added)
    return source


DIFF = readme_block("corrected diff")
# The post is the diff's old side; the README's program is its new side.
POST = "".join(line[1:] for line in DIFF.splitlines(True)[3:] if line[0] in " -")
PROGRAM = "".join(line[1:] for line in DIFF.splitlines(True)[3:] if line[0] in " +")


# Every fix, one by one


@pytest.mark.parametrize("method", METHODS)
def test_results_larger_than_the_pipe_come_back(method):
    # Ten results of 1 MB each: joined before they are read, the run would hang.
    results = mp.find_pet_names(pet_maps, 0, method, lookups.big)
    assert sorted(results) == sorted(pet_maps)
    for person, result in results.items():
        assert len(result) == 1_000_000
        assert result.startswith(pet_maps[person]["pet_name"])


FAILURES = [(how, DEFAULT) for how in ("raise", "exit", "exit0", "kill", "return")]
FAILURES += [("kill", method) for method in METHODS if method != DEFAULT]


@pytest.mark.parametrize("how, method", FAILURES)
def test_a_lookup_that_fails_is_named(how, method):
    people = {**THREE, "steve": {"pet_name": how}}
    started = time.monotonic()
    with pytest.raises(mp.PetLookupError) as error:
        mp.find_pet_names(people, 3, method, lookups.failing)
    code = {"raise": 1, "exit": 3, "kill": -9}.get(how, 0)
    assert str(error.value) == f"no result for 'steve' (exit code {code})"
    # Before the others' 3 s were up: noticed at once, and they were stopped.
    assert time.monotonic() - started < 3
    assert multiprocessing.active_children() == []


def test_timeout_stops_stuck_lookups_sigterm_first_whatever_else_arrives(tmp_path):
    # adam's lookup notes the SIGTERM it gets; steve's ignores it, and will's
    # puts one result after another, for 3 s.
    people = {"adam": {"pet_name": str(tmp_path / "sigterm")}}
    people |= {"steve": {"pet_name": "stubborn"}, "will": {"pet_name": "flood"}}
    started = time.monotonic()
    error = r"^no result for 'adam' \(timed out\)$"
    with pytest.raises(mp.PetLookupError, match=error):
        mp.find_pet_names(people, 3, None, lookups.failing, timeout=0.3)
    assert time.monotonic() - started < 3  # before will's results stopped coming
    assert (tmp_path / "sigterm").exists()
    assert multiprocessing.active_children() == []  # steve's: SIGKILL, a second on


# A terminal sends Ctrl-C and SIGHUP to every process of the job; kill, to one.
STOPS = [("SIGINT", os.killpg, 130), ("SIGTERM", os.kill, 143)]
STOPS += [("SIGHUP", os.killpg, 129)]


@pytest.mark.timeout(30)
def test_a_run_ended_early_says_why_in_one_line_and_leaves_nothing_running(tmp_path):
    # Side by side, three people each: a SIGHUP under nohup, which the run
    # outlives; a worker killed; --timeout; each stop signal under each method.
    shutil.copy(KIT / "mp.py", tmp_path)
    (tmp_path / "pets.py").write_text(f"pet_maps = {THREE}\n")
    nohup = Run("mp.py", "--delay=0.5", cwd=tmp_path, ignored=[signal.SIGHUP])
    killed = Run("mp.py", "--delay=5", cwd=tmp_path)
    timed_out = Run("mp.py", "--delay=5", "--timeout=0.3", cwd=tmp_path)
    stopped = [
        (Run("mp.py", "--delay=5", f"--start-method={m}", cwd=tmp_path), m, stop)
        for m in METHODS
        for stop in STOPS
    ]
    wait_for_workers(nohup, len(THREE), ignored=[signal.SIGHUP])
    os.killpg(nohup.pid, signal.SIGHUP)
    wait_for_workers(killed, len(THREE))
    os.kill(next(iter(workers(killed.pid))), signal.SIGKILL)
    for run, method, (name, send, _) in stopped:
        assert wait_for_workers(run, len(THREE)) == {method}
        send(run.pid, getattr(signal, name))
    assert (killed.wait().status, killed.out) == (1, "")
    error = r"mp\.py: error: no result for '(\w+)' \(exit code -9\)\n"
    assert re.fullmatch(error, killed.err)[1] in THREE
    assert (timed_out.wait().status, timed_out.out) == (1, "")
    assert timed_out.err == "mp.py: error: no result for 'adam' (timed out)\n"
    assert timed_out.seconds < 5  # its lookups were stopped, not waited for
    for run, _, (name, _, status) in stopped:
        why = f"mp.py: stopped by {name}\n"
        assert (run.wait().status, run.out, run.err) == (status, "", why)
    assert (nohup.wait().status, nohup.err) == (0, "")
    check_post_lines(nohup.out, THREE)
    for run in (killed, timed_out, nohup, *(run for run, *_ in stopped)):
        wait_until_gone(run.pid)


def test_workers_leave_ctrl_c_to_the_parent_and_end_on_sigterm():
    for method in METHODS:
        results = mp.find_pet_names(THREE, 0, method, lookups.signals)
        assert list(results.values()) == [(True, True)] * 3, method


def test_sigterm_waits_while_workers_start_and_a_stop_signal_says_so(capsys):
    saved = {number: signal.getsignal(number) for number in mp.STOP_SIGNALS}
    arrived = []
    signal.signal(signal.SIGTERM, lambda number, _: arrived.append(number))
    try:
        with mp.stop_signals_held():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)
            assert arrived == []
        assert arrived == [signal.SIGTERM]  # once the workers have started
        assert signal.getsignal(signal.SIGINT) is saved[signal.SIGINT]
        with pytest.raises(SystemExit) as stopped:
            mp.stop_run(signal.SIGTERM, None)
        # Any further stop signal is ignored, so that the clean-up can finish.
        assert {signal.getsignal(number) for number in saved} == {signal.SIG_IGN}
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
    assert stopped.value.code == 143
    assert capsys.readouterr().err == "mp.py: stopped by SIGTERM\n"


def test_lines_stay_whole_on_a_pipe_and_in_a_file(tmp_path):
    runs = []
    for number, env in enumerate(({"PYTHONUNBUFFERED": ""}, {"PYTHONUNBUFFERED": "1"})):
        with open(tmp_path / f"out{number}", "w") as file:
            runs.append(Run("mp.py", "--delay=0.1", env=env, stdout=file))
        runs.append(Run("mp.py", "--delay=0.1", env=env, stdout=subprocess.PIPE))
    for run in runs[1::2]:
        check_post_lines(run.process.communicate()[0])
    for run in runs:
        assert (run.wait().status, run.err) == (0, "")
        assert run.seconds < DELAY  # --delay, not the default 2 s
    for number in (0, 1):
        check_post_lines((tmp_path / f"out{number}").read_text())
    with mock.patch("sys.stdout") as stdout:  # and each line is one write,
        assert mp.print_line("adding to queue")
        stdout.flush.side_effect = BrokenPipeError  # flushed while a reader that
        assert not mp.print_line("adding to queue")  # has gone can be noticed
    assert stdout.write.call_args_list == [mock.call("adding to queue\n")] * 2


def test_a_reader_that_leaves_ends_the_run_quietly():
    runs = {}
    for env in ({"PYTHONUNBUFFERED": ""}, {"PYTHONUNBUFFERED": "1"}):
        for lines_read in (0, 3):  # leaving before the first line; and `| head -3`
            run = Run("mp.py", "--delay=0.1", env=env, stdout=subprocess.PIPE)
            if not lines_read:
                run.process.stdout.close()
            runs[run] = lines_read
    for run, lines_read in runs.items():
        for _ in range(lines_read):
            assert run.process.stdout.readline() == "adding to queue\n"
        run.process.stdout.close()
    for run, lines_read in runs.items():
        # Status 1 once a write fails, as in the docs' note; after three lines the
        # rest may all fit in the pipe before the reader leaves, and none fails.
        assert run.wait().err == "" and run.status in ({0, 1} if lines_read else {1})
        wait_until_gone(run.pid)


BAD_PETS = {
    "a typo": ('{"adam": {"pet_name": "max"}, "steve": {"pet_nmae": "x"}}', "steve"),
    "a number": ('{"adam": {"pet_name": 7}}', "adam"),
    "no entry": ('{"adam": {"pet_name": "max"}, "will": "cat"}', "will"),
}


@pytest.mark.parametrize("source, person", BAD_PETS.values(), ids=BAD_PETS)
def test_bad_data_in_pets_is_named_in_one_line(tmp_path, source, person):
    shutil.copy(KIT / "mp.py", tmp_path)
    (tmp_path / "pets.py").write_text(f"pet_maps = {source}\n")
    (run,) = run_all([["mp.py"]], cwd=tmp_path)
    assert (run.status, run.out) == (1, "")
    error = rf"mp\.py: error: pet_maps\['{person}'\] has no 'pet_name' string: .*\n"
    assert re.fullmatch(error, run.err)


def test_bad_data_and_bad_options_start_no_process(monkeypatch, capsys):
    def refuse(process):
        raise AssertionError("a process was started before the check")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    with pytest.raises(mp.PetLookupError, match=r"pet_maps\['steve'\]"):
        mp.find_pet_names({"adam": {"pet_name": "max"}, "steve": {}}, 0)
    with pytest.raises(ValueError, match="not a number of seconds"):
        mp.find_pet_names(pet_maps, -1)
    for option in ("--delay=-1", "--delay=nan", "--timeout=x"):  # nor do these
        with pytest.raises(SystemExit) as stopped:
            mp.main([option])
        assert stopped.value.code == 2
        error = f"argument {option.split('=')[0]}: invalid seconds value"
        assert error in capsys.readouterr().err


PETS_WITH_A_CLASS = """import enum
class PetName({}):
    MAX, FUZZY = "max", "fuzzy"
pet_maps = {{"adam": {{"pet_name": PetName.MAX}}, "will": {{"pet_name": PetName.FUZZY}}}}
"""


def test_a_pets_py_with_a_class_of_its_own_works_everywhere(tmp_path):
    base = "enum.StrEnum" if sys.version_info >= (3, 11) else "str, enum.Enum"
    shutil.copy(KIT / "mp.py", tmp_path)
    (tmp_path / "pets.py").write_text(PETS_WITH_A_CLASS.format(base))
    commands = [["mp.py", "--delay=0.1", f"--start-method={m}"] for m in METHODS]
    for run in run_all(commands, cwd=tmp_path):
        assert (run.status, run.err) == (0, "")
        check_post_lines(run.out, {1: {"pet_name": "max"}, 2: {"pet_name": "fuzzy"}})


# --work cpu: processes compute in parallel, up to the number of cores


def test_cpu_work_computes():
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = Run("mp.py", "--work=cpu", "--delay=0.05", "--start-method=fork").wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    check_post_lines(run.out)
    # The run's CPU time, its workers' included (fork: the run waits for them).
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert used >= len(pet_maps) * 0.05


# The README: its program, its diff against the post, its demos


def steps(tree):
    """The multiprocessing calls in some code, in order, with any time limit."""
    names = ("Queue", "Process", "start", "get", "is_alive", "empty", "join")
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    calls = [call for call in calls if getattr(call.func, "attr", "") in names]
    calls.sort(key=lambda call: (call.lineno, call.col_offset))
    limits = [
        [ast.unparse(k) for k in call.keywords if k.arg == "timeout"] for call in calls
    ]
    return [(call.func.attr, limit) for call, limit in zip(calls, limits)]


def test_the_readme_program_keeps_in_step_with_mp_py():
    kit = ast.parse((KIT / "mp.py").read_text())
    find = next(n for n in kit.body if getattr(n, "name", "") == "find_pet_names")
    assert steps(ast.parse(PROGRAM).body[-1]) == steps(find)


def readme_variants():
    """The README's program under forkserver (which imports it, as spawn does), with
    one lookup dying, and without each fix: {name: (source, stdout, stderr,
    status)}, outputs as {text: times}, status None for a run that is stuck."""
    guard = "if __name__ == '__main__':\n"
    started_by = f"{guard}    mp.set_start_method('forkserver')\n"
    forkserver = PROGRAM.replace(guard, started_by)
    dies = apply_change(PROGRAM, readme_block("pitfall 2").split("...\n")[0])
    pitfalls = [apply_change(PROGRAM, readme_block(f"pitfall {n}")) for n in "123"]
    line, died = "adding to queue", "no result for 'adam' (exit code 1)"
    ten = {line: 10, "consuming from queue:": 1}
    return {
        "under forkserver": (forkserver, ten, {}, 0),
        "one lookup dies": (dies, {line: 9}, {died: 1}, 1),
        "pitfall 1": (pitfalls[0], {line: 10}, {}, None),
        "pitfall 2": (pitfalls[1], {line: 9}, {}, None),
        "pitfall 3": (pitfalls[2], {}, {"bootstrapping phase": 10, "no result": 1}, 1),
    }


def test_the_readme_program_and_its_pitfall_demos(tmp_path):
    # Side by side, each watched until all it should print is out, however
    # slow the machine, then half a second more: by then one not stuck has ended.
    shutil.copy(KIT / "pets.py", tmp_path)
    runs, variants = {}, readme_variants()
    for number, (source, *_) in enumerate(variants.values()):
        (tmp_path / f"post{number}.py").write_text(source.replace("(2)", "(0.2)"))
        env = {"PYTHONUNBUFFERED": "1"}  # lines come out as printed, as in a terminal
        runs[number] = Run(f"post{number}.py", cwd=tmp_path, env=env)
    for number, (_, *wanted, _) in enumerate(variants.values()):
        while not runs[number].ended():
            output = zip(runs[number].output(), wanted)
            if all(text.count(s) >= n for text, w in output for s, n in w.items()):
                break
            time.sleep(0.02)
    time.sleep(0.5)
    for number, (name, (_, *wanted, status)) in enumerate(variants.items()):
        assert runs[number].process.poll() == status, name
        for text, counts in zip(runs[number].output(), wanted):
            assert {s: text.count(s) for s in counts} == counts, name


# The post's run: all ten names, once each, in about one delay


@pytest.fixture(scope="session", autouse=True)
def post_runs(tmp_path_factory):
    """Side by side, from before the first test while the others run: python3
    mp.py under each start method, each beside ten plain processes that sleep the
    delay; find_pet_names() with a lookup that tells when it slept; the README's
    program. A wrapper times each; their tests come last."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copy(KIT / "pets.py", folder)
    (folder / "program.py").write_text(PROGRAM)
    commands = {("readme", None): [folder / "program.py"]}
    commands["stamped", None] = [".ci/lookups.py", "stamped", "default", DELAY]
    for method in RUNS:
        option = [f"--start-method={method}"] if method in METHODS else []
        commands["kit", method] = ["mp.py", *option]
        commands["baseline", method] = [".ci/lookups.py", "sleep", method, DELAY]
    runs = {
        key: Run(".ci/lookups.py", "timed", sys.executable, *command)
        for key, command in commands.items()
    }
    Run.started.clear()  # these are not killed when the first test ends
    yield runs
    for run in runs.values():
        run.kill()


@pytest.mark.parametrize("method", RUNS)
def test_all_ten_names_come_back_once_each(post_runs, method):
    status, out, err, _ = post_runs["kit", method].timed()
    assert (status, err) == (0, "")
    check_post_lines(out)


def test_the_ten_lookups_overlap_each_waiting_the_delay(post_runs):
    status, out, err, _ = post_runs["stamped", None].timed()
    assert (status, err) == (0, "")
    stamps = json.loads(out)
    assert sorted(stamps) == sorted(pet_maps)
    began, ended, methods = zip(*stamps.values())
    assert all(end - start >= DELAY for start, end in zip(began, ended))
    # All ten were waiting at one moment: no serial or batched run can do that.
    assert max(began) < min(ended)
    assert set(methods) == {DEFAULT}  # this Python's own start method


@pytest.mark.skipif(not TIMING, reason="MP_TEST_TIMING=off")
@pytest.mark.parametrize("method", RUNS)
def test_the_run_takes_about_one_delay(post_runs, method, report):
    kit, plain = (post_runs[k, method].timed()[3] for k in ("kit", "baseline"))
    line = f"sleep, {method}: python3 mp.py took {kit:.2f} s for ten lookups of "
    line += f"{DELAY:g} s; ten plain sleeping processes beside it, {plain:.2f} s"
    report.append(line)
    assert kit >= DELAY
    if plain >= 2.5 * DELAY:
        report.append(f"  not judged: the machine is too busy ({os.getloadavg()})")
        pytest.skip(f"the machine is too busy to judge: {line}")
    # Against the baseline, so that load slows both: a run in two batches of
    # five takes a whole delay longer, and fails.
    assert kit < plain + DELAY / 2, line


def test_the_readme_program_is_the_post_corrected(post_runs):
    assert readme_block("corrected program") == PROGRAM
    assert len(PROGRAM.splitlines()) <= 45
    assert "pet_maps = {" in POST and "output = mp.Queue()" in POST
    old, new = POST.splitlines(True), PROGRAM.splitlines(True)
    assert DIFF == "".join(difflib.unified_diff(old, new, "the post", "corrected"))
    status, out, err, _ = post_runs["readme", None].timed()
    assert (status, err) == (0, "")
    check_post_lines(out)


@pytest.mark.skipif(not TIMING, reason="MP_TEST_TIMING=off")
def test_cpu_work_speeds_up_with_the_cores(report):
    # Beside ten plain processes doing the same work, so that load slows both.
    work = len(pet_maps) * 0.05  # each lookup computes for 0.05 s of CPU time
    kit = ["mp.py", "--work=cpu", "--delay=0.05"]
    kit, plain = run_all([kit, [".ci/lookups.py", "cpu", "default", 0.05]])
    assert (kit.status, plain.status) == (0, 0)
    check_post_lines(kit.out)
    cores = work / float(plain.out)  # what the plain processes had, start-up apart
    line = f"cpu: ten lookups of 0.05 s of CPU took {kit.seconds:.2f} s; ten plain "
    line += f"processes beside them, {plain.seconds:.2f} s, {cores:.1f} cores busy"
    report.append(line)
    if cores < 0.6:  # beside the kit, with a second core free, they get about one
        report.append(f"  not judged: no second core to be had ({os.getloadavg()})")
        pytest.skip(f"the machine is too busy to judge: {line}")
    # As parallel as plain processes: one at a time, or threads, take far longer.
    assert kit.seconds < plain.seconds / 0.75, line
