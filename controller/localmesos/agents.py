"""What agents do with tasks: run them as local processes (real mode) or pretend to
(simulated mode), reporting every state change to the master as a Mesos agent would.

Real mode follows the command executor (src/launcher/executor.cpp): TASK_STARTING, then
TASK_RUNNING once the process is up; on exit TASK_FINISHED or TASK_FAILED with "Command exited
with status N" (or "Command terminated with signal ..."); a kill sends SIGTERM to the task's
process group, TASK_KILLING first for frameworks that asked for it, and SIGKILL once the grace
period is over; `max_completion_time` fails the task with REASON_MAX_COMPLETION_TIME_REACHED.
Tasks that need a container image run with `docker run` when a Docker engine answers, and
otherwise fail as Mesos does when the Docker containerizer is missing.

A task with a `health_check` is health checked as the command executor does it (health.py
probes; what the executor makes of a verdict is here): the checker starts with the task,
just before its TASK_RUNNING; each verdict it reports becomes a TASK_RUNNING update with
`healthy` and reason REASON_TASK_HEALTH_CHECK_STATUS_UPDATED (so the first healthy one, and
every unhealthy one); the verdict that reaches `consecutive_failures` also kills the task as
a scheduler's KILL would (SIGTERM, the task's kill policy grace, TASK_KILLING for frameworks
that asked for it), and its TASK_KILLED carries `healthy: false`. Nothing is reported once
the task is being killed or has ended, and the checker's thread is joined before the task's
terminal update.

Each task's command executor runs in a sandbox of its own, laid out as a Mesos agent lays
it out (`<work_dir>/slaves/<agent>/frameworks/<framework>/executors/<executor>/runs/
<container>`, with `runs/latest` a link to the newest run). The agent remembers its
frameworks and executors as a Mesos agent does, live and completed, for its `/state`
(state_json.py).

Simulated mode spawns nothing: a task's duration and exit code come from the environment
variables or labels DOCKET_SIM_DURATION (seconds) and DOCKET_SIM_EXIT_CODE (or, when the task
id matches the regular expression DOCKET_SIM_FAIL_TASKS, exit code 1: some attempts of a kind
fail, the rest succeed), and the master's timer heap plays its life, so one machine carries
thousands of agents and tasks.

Simulated tasks with a `health_check` report health as a real agent's would, on the same
schedule (delay, interval, grace period, consecutive failures) in the timer heap's time, from
the task's TASK_RUNNING on; their probes pass unless the variable or label
DOCKET_SIM_HEALTHY is false (then every probe fails) or DOCKET_SIM_UNHEALTHY_AFTER (seconds)
says from when on they fail. A task killed by its health check ends TASK_KILLED with
`healthy: false`, as on a real agent. Tasks without a health check never report health,
whatever these say.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from controller.localmesos.health import (
    HEALTH_REASON,
    HealthChecker,
    HealthCheckSpec,
    Verdict,
    simulated_verdicts,
)
from controller.localmesos.tasks import kill_grace
from controller.localmesos.validation import secret_data

if TYPE_CHECKING:
    from collections.abc import Iterator

    from controller.localmesos.master import Master
    from controller.localmesos.models import Task

log = structlog.get_logger("docket.localmesos.agent")

SIM_DURATION = "DOCKET_SIM_DURATION"
SIM_EXIT_CODE = "DOCKET_SIM_EXIT_CODE"
SIM_FAIL_TASKS = "DOCKET_SIM_FAIL_TASKS"
SIM_HEALTHY = "DOCKET_SIM_HEALTHY"
SIM_UNHEALTHY_AFTER = "DOCKET_SIM_UNHEALTHY_AFTER"
# How long an executor waits for its health checker's thread once the task has ended: a
# probe is aborted at once, so this is only a bound against a probe that cannot be.
HEALTH_JOIN_SECONDS = 10.0

# How much a Mesos agent remembers of what has completed (src/slave/constants.hpp
# MAX_COMPLETED_FRAMEWORKS; the default of --max_completed_executors_per_framework).
MAX_COMPLETED_FRAMEWORKS = 50
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150


def task_env(info: dict[str, Any]) -> dict[str, str]:
    """The task's environment as the agent gives it: VALUE variables as written, SECRET ones
    (validated by the master: type VALUE, base64 data, no NUL) decoded, as the containerizer
    resolves them (the environment_secret isolator, src/slave/containerizer/mesos/isolators/
    environment_secret.cpp, through the default SecretResolver, which gives a VALUE secret's
    data; the command executor, src/launcher/executor.cpp, gets them as the task's
    environment).
    Bytes that are not UTF-8 are carried through 'surrogateescape', which the process
    environment turns back into the same bytes."""
    variables = (((info.get("command") or {}).get("environment") or {}).get("variables") or [])
    out: dict[str, str] = {}
    for v in variables:
        name = v.get("name")
        if not name:
            continue
        if v.get("type") == "SECRET":
            data = secret_data(v.get("secret") or {})
            out[str(name)] = data.decode("utf-8", "surrogateescape")
        else:
            out[str(name)] = str(v.get("value", ""))
    return out


def task_labels(info: dict[str, Any]) -> dict[str, str]:
    return {str(x.get("key")): str(x.get("value", ""))
            for x in (info.get("labels") or {}).get("labels") or []}


def needs_image(info: dict[str, Any]) -> str | None:
    """The image a task needs, if any: DOCKER containers, or MESOS ones with an image."""
    container = info.get("container") or {}
    if container.get("type") == "DOCKER":
        return str((container.get("docker") or {}).get("image", ""))
    mesos = container.get("mesos") or {}
    image = mesos.get("image") or {}
    if image:
        return str((image.get("docker") or {}).get("name") or image.get("type") or "image")
    return None


_docker_state: dict[str, bool] = {}


def docker_available() -> bool:
    """Whether a Docker engine answers (asked once per process)."""
    if "ok" not in _docker_state:
        ok = False
        if shutil.which("docker"):
            try:
                ok = subprocess.run(["docker", "info"], capture_output=True,
                                    timeout=5).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _docker_state["ok"] = ok
    return _docker_state["ok"]


def _exit_message(returncode: int) -> str:
    if returncode >= 0:
        return f"Command exited with status {returncode}"
    try:
        name = signal.strsignal(-returncode) or f"signal {-returncode}"
    except ValueError:
        name = f"signal {-returncode}"
    return f"Command terminated with signal {name}"


@dataclass
class ExecutorRun:
    """One run of a task's command executor: its sandbox, and whether its process ended."""

    task: Task
    directory: Path
    exited: bool = False


@dataclass
class AgentFramework:
    """A framework as a real agent keeps it: the FrameworkInfo it launched tasks with, its
    live executors, and its most recently completed ones. It is completed itself while it
    has no live executor (Mesos' `Framework::idle`); `completed_seq` orders those."""

    info: dict[str, Any]
    executors: dict[str, ExecutorRun] = field(default_factory=dict)
    completed: deque[ExecutorRun] = field(
        default_factory=lambda: deque(maxlen=MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK))
    completed_seq: int = 0


class RealRuntime:
    """Runs command tasks as local processes with a sandbox per run.

    `frameworks` is guarded by the master lock: launches arrive under it, and the agent's
    `/state` reads it under it."""

    def __init__(self, master: Master, work_dir: Path) -> None:
        self.master = master
        self.work_dir = Path(work_dir)
        self.agent_id = ""
        self.frameworks: dict[str, AgentFramework] = {}
        self._completed_seq = itertools.count(1)
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._killed: set[tuple[str, str]] = set()
        self._timed_out: set[tuple[str, str]] = set()
        # Health checkers of running tasks, and the tasks their checks killed.
        self._checkers: dict[tuple[str, str], HealthChecker] = {}
        self._health_killed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        # Executor threads, joined on shutdown: none may still write into a sandbox that the
        # cluster is about to delete. Once shut down, a task that starts is killed at once.
        self._threads: set[threading.Thread] = set()
        self._shut = False

    def executor_dir(self, framework_id: str, executor_id: str) -> Path:
        return (self.work_dir / "slaves" / self.agent_id / "frameworks" / framework_id /
                "executors" / executor_id)

    def resolve(self, path: str) -> Path | None:
        """The file behind a path `/files` serves. Mesos attaches each executor's sandbox
        three ways (slave.cpp `Framework::addExecutor`): as the virtual
        `/frameworks/<F>/executors/<E>/runs/latest`, as the agent's real `.../runs/latest`,
        and as the executor's `directory` itself; a path inside the sandbox may follow."""
        root = f"{self.work_dir}/slaves/{self.agent_id}/"
        real = path.startswith(root)
        parts = [p for p in (path[len(root):] if real else path).split("/") if p]
        if len(parts) < 6 or parts[0] != "frameworks" or parts[2] != "executors" \
                or parts[4] != "runs" or any(p in (".", "..") for p in parts):
            return None
        if parts[5] != "latest" and not real:
            return None
        base = self.executor_dir(parts[1], parts[3]) / "runs" / parts[5]
        return base.joinpath(*parts[6:]) if base.is_dir() else None

    def _update(self, task: Task, state: str, **kw: Any) -> None:
        self.master.agent_update(self.agent_id, task.framework_id, task.task_id, state, **kw)

    def launch(self, task: Task) -> None:
        """Called with the master lock held."""
        book = self.frameworks.get(task.framework_id)
        if book is None:
            fw = self.master.frameworks.get(task.framework_id)
            info = dict(fw.info) if fw is not None else {"id": {"value": task.framework_id}}
            book = self.frameworks[task.framework_id] = AgentFramework(info)
        previous = book.executors.pop(task.executor_id, None)
        if previous is not None:  # the same executor id again: its old run has completed
            book.completed.append(previous)
        run = ExecutorRun(task, self.executor_dir(task.framework_id, task.executor_id) /
                          "runs" / task.container_id)
        book.executors[task.executor_id] = run
        book.completed_seq = 0
        thread = threading.Thread(target=self._run_executor, args=(run,),
                                  name=f"task-{task.task_id[:40]}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def sweep(self, tracked: Container[tuple[str, str]]) -> None:
        """Complete what a Mesos agent would have completed by now (called with the master
        lock held). An executor completes once its process has ended and its task is no
        longer `tracked` by the agent (the terminal update was acknowledged, or the
        framework is gone); a framework completes with its last live executor. Only the
        most recent completed frameworks are kept."""
        for framework_id, book in self.frameworks.items():
            for executor_id, run in list(book.executors.items()):
                if run.exited and (framework_id, run.task.task_id) not in tracked:
                    del book.executors[executor_id]
                    book.completed.append(run)
            if not book.executors and not book.completed_seq:
                book.completed_seq = next(self._completed_seq)
        idle = sorted((b.completed_seq, fid) for fid, b in self.frameworks.items()
                      if not b.executors)
        for _, framework_id in idle[:max(0, len(idle) - MAX_COMPLETED_FRAMEWORKS)]:
            del self.frameworks[framework_id]

    def _run_executor(self, run: ExecutorRun) -> None:
        try:
            run.directory.mkdir(parents=True, exist_ok=True)
            latest = run.directory.parent / "latest"
            link = run.directory.parent / f".latest-{run.directory.name}"
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(run.directory.name)
            os.replace(link, latest)
            self._run(run.task, run.directory)
        finally:
            run.exited = True
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _argv(self, info: dict[str, Any]) -> list[str]:
        command = info.get("command") or {}
        if command.get("shell", True):
            return ["/bin/sh", "-c", str(command.get("value", ""))]
        value = command.get("value")
        args = [str(a) for a in command.get("arguments") or []]
        return args if not value else [str(value), *args[1:]] if args else [str(value)]

    def _run(self, task: Task, sandbox: Path) -> None:
        key = (task.framework_id, task.task_id)
        info = task.info
        image = needs_image(info)
        if image is not None and not docker_available():
            self._update(task, "TASK_FAILED", source="SOURCE_AGENT",
                         reason="REASON_CONTAINER_LAUNCH_FAILED",
                         message=f"Failed to launch container: image {image!r} needs a Docker "
                                 "engine and none is available on this agent (the Docker "
                                 "containerizer is not enabled)")
            return
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(sandbox),
               "MESOS_SANDBOX": str(sandbox), "MESOS_TASK_ID": task.task_id,
               "MESOS_AGENT_ID": self.agent_id, "MESOS_FRAMEWORK_ID": task.framework_id,
               "MESOS_EXECUTOR_ID": task.executor_id}
        env.update(task_env(info))
        argv = self._argv(info)
        if image is not None:
            argv = ["docker", "run", "--rm", "-v", f"{sandbox}:/mnt/mesos/sandbox",
                    # Names only: docker takes each value from its own environment
                    # (`env`), so no value, a secret's least of all, is on a command line.
                    *[f"-e{k}" for k in task_env(info)], image, *argv]
        self._update(task, "TASK_STARTING")
        spec = HealthCheckSpec.from_task(info)
        try:
            # Appended to, not just written: command health checks write to the same stderr
            # (the executor's, in Mesos) while the task runs.
            with open(sandbox / "stdout", "ab") as out, open(sandbox / "stderr", "ab") as err:
                proc = subprocess.Popen(argv, cwd=sandbox, env=env, stdout=out, stderr=err,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            self._update(task, "TASK_FAILED", source="SOURCE_EXECUTOR",
                         message=f"Failed to launch command: {exc}")
            return
        checker = None
        with self._lock:
            self._procs[key] = proc
            killed_early = key in self._killed or self._shut
            if spec is not None and not killed_early:
                # Made before TASK_RUNNING is sent, as the executor makes it: its grace
                # period runs from here, and no verdict can precede that update.
                checker = self._checkers[key] = HealthChecker(
                    spec, task.task_id, cwd=sandbox, env=env, timers=self.master.timers,
                    report=functools.partial(self._health, task, key))
        self._update(task, "TASK_RUNNING", container_status={"executor_pid": proc.pid})
        if checker is not None:
            checker.start()
        if killed_early:
            self._signal(proc, signal.SIGKILL)
        mct = ((info.get("max_completion_time") or {}).get("nanoseconds"))
        timer = None
        if mct is not None:
            timer = self.master.timers.call_later(mct / 1e9, lambda: self._timeout(key, proc))
        returncode = proc.wait()
        if timer:
            timer.cancel()
        with self._lock:
            # Gone from `_procs`: the task has terminated, and a verdict still on its way
            # is dropped (`_health`).
            self._procs.pop(key, None)
            checker = self._checkers.pop(key, None)
            killed = key in self._killed
            timed_out = key in self._timed_out
            # The executor marks the end of a task its health check killed (`healthy`).
            healthy = False if key in self._health_killed else None
        if checker is not None:
            checker.stop()
            checker.join(HEALTH_JOIN_SECONDS)
            if checker.alive:
                log.warning("health checker did not stop", task_id=task.task_id)
        if timed_out:
            self._update(task, "TASK_FAILED", reason="REASON_MAX_COMPLETION_TIME_REACHED",
                         message=_exit_message(returncode), healthy=healthy)
        elif killed:
            self._update(task, "TASK_KILLED", message=_exit_message(returncode),
                         healthy=healthy)
        elif returncode == 0:
            self._update(task, "TASK_FINISHED", message=_exit_message(returncode))
        else:
            self._update(task, "TASK_FAILED", message=_exit_message(returncode))

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _timeout(self, key: tuple[str, str], proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._timed_out.add(key)
            checker = self._checkers.get(key)
        if checker is not None:
            checker.stop()  # the executor stops checking a task it kills
        self._signal(proc, signal.SIGKILL)

    def _health(self, task: Task, key: tuple[str, str], verdict: Verdict) -> None:
        """A verdict of the task's health checker, as the command executor's
        `taskHealthUpdated` takes it (on the checker's thread): dropped once the task is
        being killed or has terminated, else a TASK_RUNNING update with `healthy`, and a
        kill with the task's own kill policy when the checker says so."""
        with self.master.lock:  # before `_lock`, as a KILL from the master takes them
            with self._lock:
                live = (key in self._procs and key not in self._killed
                        and key not in self._timed_out and not self._shut)
                if live and verdict.kill_task:
                    self._health_killed.add(key)
            if not live:
                return
            self._update(task, "TASK_RUNNING", reason=HEALTH_REASON, healthy=verdict.healthy)
            if verdict.kill_task:
                fw = self.master.frameworks.get(task.framework_id)
                killing = fw is not None and "TASK_KILLING_STATE" in fw.capabilities
                self.kill(task, kill_grace(task.info.get("kill_policy")), killing)

    def kill(self, task: Task, grace_seconds: float, killing_state: bool) -> None:
        key = (task.framework_id, task.task_id)
        with self._lock:
            if key in self._killed:
                return
            self._killed.add(key)
            proc = self._procs.get(key)
            checker = self._checkers.get(key)
        if checker is not None:
            checker.stop()  # the executor stops checking a task it kills
        if proc is None:
            return  # not started yet: it is killed as soon as it starts
        if killing_state:
            self._update(task, "TASK_KILLING")
        if grace_seconds <= 0:
            self._signal(proc, signal.SIGKILL)
            return
        self._signal(proc, signal.SIGTERM)
        self.master.timers.call_later(
            grace_seconds,
            lambda: self._signal(proc, signal.SIGKILL) if proc.poll() is None else None)

    def shutdown(self) -> None:
        with self._lock:
            self._shut = True
            procs = list(self._procs.items())
            self._killed.update(k for k, _ in procs)
            checkers = list(self._checkers.values())
        for checker in checkers:
            checker.stop()  # joined by their executor threads, joined below
        for _, proc in procs:
            self._signal(proc, signal.SIGKILL)
        deadline = time.monotonic() + 5
        for _, proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class SimulatedRuntime:
    """A hollow agent: tasks take the time their env or labels say, and exit as told.

    Tasks launched together (one ACCEPT puts dozens on an agent) start together: one timer
    reports all their TASK_STARTING and TASK_RUNNING updates under one hold of the master lock,
    and those with the same duration finish on one timer too, so a burst of launches costs the
    timer thread a couple of wake-ups and the stream one write per state instead of one each.
    A task's run time is counted from the moment its TASK_RUNNING is reported.

    Health is played the same way: tasks started together with the same health check and
    the same simulated health share one lazy sequence of verdicts (`simulated_verdicts`) and
    one timer per verdict, so a healthy task costs one timer in all, and only an unhealthy
    one costs a timer per reported failure."""

    def __init__(self, master: Master, default_duration: float = 0.1) -> None:
        self.master = master
        self.agent_id = ""
        self.default_duration = default_duration
        self._done: set[tuple[str, str]] = set()
        # Launched, not yet started: (task, duration, exit code, max_completion_time hit,
        # health: the check and when its probes start failing, or None without a check).
        # Guarded by the master lock, under which launches arrive.
        self._launched: list[tuple[Task, float, int, bool, _SimHealth | None]] = []
        self._shut = False

    def launch(self, task: Task) -> None:
        settings = {**task_labels(task.info), **task_env(task.info)}
        try:
            duration = float(settings.get(SIM_DURATION, self.default_duration))
            code = int(settings.get(SIM_EXIT_CODE, 0))
            failing = settings.get(SIM_FAIL_TASKS)
            if failing and re.search(failing, task.task_id):
                code = 1
        except (ValueError, re.error):
            duration, code = self.default_duration, 0
        mct = ((task.info.get("max_completion_time") or {}).get("nanoseconds"))
        timed_out = mct is not None and mct / 1e9 < duration
        if timed_out:
            duration = mct / 1e9  # type: ignore[operator]
        self._launched.append((task, duration, code, timed_out, _sim_health(task, settings)))
        if len(self._launched) == 1:
            self.master.timers.call_soon(self._start_launched)

    def _start_launched(self) -> None:
        finishing: dict[float, list[tuple[Task, int, bool]]] = {}
        checked: dict[_SimHealth, list[Task]] = {}
        with self.master.lock:
            launched, self._launched = self._launched, []
            for task, duration, code, timed_out, health in launched:
                self._update(task, "TASK_STARTING")
                self._update(task, "TASK_RUNNING")
                finishing.setdefault(duration, []).append((task, code, timed_out))
                if health is not None:
                    checked.setdefault(health, []).append(task)
            started = time.monotonic()  # when the checkers start: their time 0
        for duration, tasks in finishing.items():
            self.master.timers.call_later(duration, functools.partial(self._finish, tasks))
        for (spec, unhealthy_from), group in checked.items():
            self._next_verdict(simulated_verdicts(spec, unhealthy_from), group, started)

    def _next_verdict(self, verdicts: Iterator[tuple[float, Verdict]], tasks: list[Task],
                      started: float) -> None:
        """Schedule the next verdict of these tasks' (shared) checker, if there is one."""
        upcoming = next(verdicts, None)
        if upcoming is None or self._shut:
            return
        at, verdict = upcoming
        self.master.timers.call_later(
            started + at - time.monotonic(),
            functools.partial(self._verdict, verdicts, tasks, started, verdict))

    def _verdict(self, verdicts: Iterator[tuple[float, Verdict]], tasks: list[Task],
                 started: float, verdict: Verdict) -> None:
        """Report a verdict for every task still running, as the executor would (see
        RealRuntime._health); the tasks that have ended drop out of the sequence."""
        with self.master.lock:
            live = [t for t in tasks if (t.framework_id, t.task_id) not in self._done]
            for task in live:
                self._update(task, "TASK_RUNNING", reason=HEALTH_REASON,
                             healthy=verdict.healthy)
                if verdict.kill_task:
                    fw = self.master.frameworks.get(task.framework_id)
                    killing = fw is not None and "TASK_KILLING_STATE" in fw.capabilities
                    self.kill(task, kill_grace(task.info.get("kill_policy")), killing,
                              by_health=True)
        if live and not verdict.kill_task:
            self._next_verdict(verdicts, live, started)

    def _finish(self, tasks: list[tuple[Task, int, bool]]) -> None:
        with self.master.lock:
            for task, code, timed_out in tasks:
                key = (task.framework_id, task.task_id)
                if key in self._done:
                    continue
                self._done.add(key)
                if timed_out:
                    self._update(task, "TASK_FAILED",
                                 reason="REASON_MAX_COMPLETION_TIME_REACHED",
                                 message=_exit_message(-signal.SIGKILL))
                elif code == 0:
                    self._update(task, "TASK_FINISHED", message=_exit_message(0))
                else:
                    self._update(task, "TASK_FAILED", message=_exit_message(code))

    def _update(self, task: Task, state: str, **kw: Any) -> None:
        self.master.agent_update(self.agent_id, task.framework_id, task.task_id, state, **kw)

    def kill(self, task: Task, grace_seconds: float, killing_state: bool, *,
             by_health: bool = False) -> None:
        key = (task.framework_id, task.task_id)
        if key in self._done:
            return
        self._done.add(key)
        if killing_state:
            self._update(task, "TASK_KILLING")
        healthy = False if by_health else None  # as the executor marks a health kill
        self.master.timers.call_soon(
            lambda: self._update(task, "TASK_KILLED", message=_exit_message(-signal.SIGTERM),
                                 healthy=healthy))

    def shutdown(self) -> None:
        self._shut = True  # no further health verdicts: the agent is gone


_SimHealth = tuple[HealthCheckSpec, float | None]
"""A simulated task's health check and when its probes start failing (None: never)."""


def _sim_health(task: Task, settings: dict[str, str]) -> _SimHealth | None:
    """What a simulated task's checker will see: None without a health check; else its
    check, and from when on (seconds after TASK_RUNNING) its probes fail, from
    DOCKET_SIM_HEALTHY and DOCKET_SIM_UNHEALTHY_AFTER (a value that is not a number is
    ignored, as DOCKET_SIM_DURATION's is)."""
    spec = HealthCheckSpec.from_task(task.info)
    if spec is None:
        return None
    if settings.get(SIM_HEALTHY, "true").strip().lower() in ("false", "0", "no"):
        return spec, 0.0
    after = settings.get(SIM_UNHEALTHY_AFTER)
    try:
        return spec, None if after is None else max(0.0, float(after))
    except ValueError:
        return spec, None
