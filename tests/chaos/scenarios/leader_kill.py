"""Scenario 5 (issue 14): three controller replicas; the leader killed with SIGKILL, and the
leader frozen with SIGSTOP past its lease and thawed after another took over.

Kill: the takeover is measured from the kill instant to the leader key naming another replica
(polled every 10 ms), to that replica's /readyz 200, and to the first launch the master
accepts afterwards; it must come within the lease TTL + 2 s.

Freeze: once a standby has taken over, the new leader is frozen too (briefly: well inside
its own renew deadline) and only then is the deposed leader thawed, so for a quiet window the
deposed leader is the only replica that can act (the third only campaigns, which writes
nothing while a leader key exists). Evidence, never Docket's word: etcd's revision over the
window (any write moves it; the keys that changed are named), the master's launch log (no
launch in the window, and none afterwards of a task whose intent was written before the
takeover: the new leader launches a written-off intent under a new id, so such a launch can
only be the deposed leader's), and the framework's event stream (the deposed leader must not
subscribe again and take the framework back). `check_deposed` is the pure verdict, tested on
doctored histories in tests/chaos/test_fuzz_generator.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from controller.api import LAUNCHING, ExecutionRecord
from tests.chaos.invariants import Report, Violation
from tests.chaos.scenarios import Options, Scenario
from tests.chaos.scenarios.base import Run, execute, seconds_summary
from tests.chaos.world import World, WorldConfig

LEASE_SECONDS = 3  # renew deadline 2 s, renewed every 0.67 s
BOUND_SECONDS = LEASE_SECONDS + 2.0
QUIET_SECONDS = 0.8  # the new leader frozen for this (plus ~0.3 s to see etcd still)
SHORT_KILLS, SHORT_FREEZES = 1, 1
FULL_KILLS, FULL_FREEZES = 5, 2
POLL = 0.01


@dataclass
class Deposed:
    """What the checks of one freeze need, as plain data."""

    deposed: str  # the replica's name
    thawed_at: float  # time.time(), the launch log's clock
    quiet_until: float
    takeover_revision: int  # create_revision of the new leader's key
    changed: list[tuple[str, int]] = field(default_factory=list)  # (key, revision) in window
    revision_moved: int = 0  # etcd revisions made in the window
    old_intents: set[str] = field(default_factory=set)  # intents created before takeover
    launches: list[tuple[float, str]] = field(default_factory=list)  # (time, task id)
    stream_before: str = ""
    stream_after: str = ""


def check_deposed(d: Deposed) -> list[Violation]:
    """Writes and launches of a deposed leader, from etcd, the launch log and the stream."""
    out = [Violation("deposed-leader-wrote", d.deposed, f"{key} at revision {rev}",
                     "etcd changed while only the deposed leader could act")
           for key, rev in d.changed]
    if d.revision_moved and not d.changed:
        out.append(Violation("deposed-leader-wrote", d.deposed,
                             f"{d.revision_moved} revision(s)", "keys deleted in the window"))
    for at, task_id in d.launches:
        if d.thawed_at <= at <= d.quiet_until:
            out.append(Violation("deposed-leader-launched", d.deposed, task_id,
                                 f"launched {at - d.thawed_at:.3f}s after the thaw, while "
                                 "only the deposed leader could act"))
        elif at > d.thawed_at and task_id in d.old_intents:
            out.append(Violation("deposed-leader-launched", d.deposed, task_id,
                                 "an intent written before the takeover, launched after "
                                 "the thaw"))
    if d.stream_before != d.stream_after:
        out.append(Violation("deposed-leader-subscribed", d.deposed, d.stream_after or "none",
                             f"the framework's stream changed from {d.stream_before}"))
    return out


# --- sources of truth ---------------------------------------------------------------------
def _revision(world: World) -> int:
    return world.user.list_raw(world.config.prefix + "/controller/")[1]


def _keys_at(world: World, revision: int) -> dict[str, int]:
    items, _ = world.user.list_raw(world.config.prefix + "/", revision=revision)
    return {key: mod for key, _v, mod, _c, _ver in items}


def _stream(world: World) -> str:
    with world.lm.master.lock:
        streams = [fw.stream.stream_id for fw in world.lm.master.frameworks.values()
                   if fw.connected and fw.stream is not None]
    return ",".join(sorted(streams))


def _intents(world: World) -> dict[str, tuple[str, int]]:
    """task id -> (recorded state, create_revision of its record)."""
    items, _ = world.user.list_raw(world.user.keys.executions_root())
    out = {}
    for _key, value, _mod, create, _ver in items:
        record = ExecutionRecord.model_validate_json(value)
        out[record.task_id] = (record.state, create)
    return out


def _pending_intents(world: World) -> list[str]:
    known = {t.task_id for t in world.lm.tasks()}
    return [tid for tid, (state, _) in _intents(world).items()
            if state == LAUNCHING and tid not in known]


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


def _poll(check: Any, timeout: float, interval: float = POLL) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        done = value is not None and value is not False and value != []  # 0 is an index
        if done or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _leader_index(world: World) -> int | None:
    found = world.leader()
    return world.controllers.index(found) if found is not None else None


def _other_leader(world: World, old: int) -> int | None:
    n = _leader_index(world)
    return n if n is not None and n != old else None


def _ready(run: Run, n: int, timeout: float) -> bool:
    return bool(_poll(lambda: run.world.readyz(n, timeout=1.0)[0] == 200, timeout, 0.05))


# --- the faults --------------------------------------------------------------------------
def _kill(run: Run, k: int, out: dict[str, list[float]]) -> None:
    world = run.world
    n = _poll(lambda: _leader_index(world), 30)
    assert n is not None, "no leader"
    run.log(f"kill {k}: {world.controllers[n].name} leads")
    _poll(lambda: _pending_intents(world), 1.5, 0.05)  # better with launches in the air
    run.log(f"kill {k}: killing")
    launched_before = len(world.lm.launches())
    t0, wall0 = time.monotonic(), time.time()
    world.kill_controller(n)
    m = _poll(lambda: _other_leader(world, n), BOUND_SECONDS + 20)
    took = time.monotonic() - t0
    if m is None:
        run.violations.append(Violation("takeover-late", world.controllers[n].name,
                                        f"kill {k}", "nobody took over"))
        return
    out["takeover_seconds"].append(took)
    if took > BOUND_SECONDS:
        run.violations.append(Violation(
            "takeover-late", world.controllers[m].name, f"kill {k}",
            f"{took:.2f}s after the kill of {world.controllers[n].name}, "
            f"more than the lease TTL + 2 s ({BOUND_SECONDS:g}s)"))
    if _ready(run, m, 30):
        out["ready_seconds"].append(time.monotonic() - t0)
        world.mark_up()
    first = _poll(lambda: [t for t, *_ in world.lm.launches()[launched_before:] if t > wall0],
                  3, 0.05)
    if first:
        out["first_launch_seconds"].append(first[0] - wall0)
    run.log(f"kill {k}: {world.controllers[m].name} leads {took:.2f}s after the kill")
    world.start_controller(n)


def _freeze(run: Run, k: int, deposed: list[Deposed], out: dict[str, Any]) -> None:
    world = run.world
    n = _poll(lambda: _leader_index(world), 30)
    assert n is not None, "no leader"
    _ready(run, n, 30)
    old = world.controllers[n]
    out["pending_intents_at_freeze"].append(len(_poll(lambda: _pending_intents(world), 1.5,
                                                      0.05)))
    t0 = time.monotonic()
    world.freeze_controller(n)
    world.mark_down(f"{old.name} frozen")
    m = _poll(lambda: _other_leader(world, n), BOUND_SECONDS + 20)
    if m is None:
        run.violations.append(Violation("takeover-late", old.name, f"freeze {k}",
                                        "nobody took over from the frozen leader"))
        world.thaw_controller(n)
        return
    out["takeover_seconds"].append(time.monotonic() - t0)
    new = world.controllers[m]
    if _ready(run, m, 30):
        world.mark_up()
    run.pause(run.rng.uniform(0.5, 1.5))  # the new leader at work
    found = world.user.get_raw(world.user.keys.controller("leader"))
    if found is None or found[0].decode() != new.identity:
        # The new leader lost its lease already (a loaded machine): no quiet window to
        # observe; counted, and the short test demands one.
        run.log(f"freeze {k}: leadership moved again; no quiet window")
        out["skipped"] += 1
        world.thaw_controller(n)
        return
    takeover_revision = found[2]

    # The quiet window: the new leader frozen, the deposed one thawed.
    pid = new.pid
    assert pid is not None
    world.freeze_controller(m)
    _poll(lambda: _stopped(pid), 2)
    before, last = _revision(world), -1
    for _ in range(20):  # what the new leader had already sent lands first (bounded)
        time.sleep(0.05)
        last, before = before, _revision(world)
        if last == before:
            break
    stream_before = _stream(world)
    intents = _intents(world)
    d = Deposed(old.name, time.time(), 0.0, takeover_revision, stream_before=stream_before,
                old_intents={t for t, (_, create) in intents.items()
                             if create < takeover_revision})
    world.thaw_controller(n)
    time.sleep(QUIET_SECONDS)  # the window itself: observed, not waited on
    after = _revision(world)
    d.quiet_until = time.time()
    d.stream_after = _stream(world)
    world.thaw_controller(m)
    d.revision_moved = after - before
    if after != before:
        old_keys, new_keys = _keys_at(world, before), _keys_at(world, after)
        d.changed = sorted({(k, new_keys.get(k, after)) for k in old_keys.keys() | new_keys.keys()
                            if old_keys.get(k) != new_keys.get(k)})
    run.log(f"freeze {k}: {new.name} took over from {old.name}; quiet window: "
            f"{after - before} revision(s)")
    still = world.user.get_raw(world.user.keys.controller("leader"))
    if still is None or still[2] != takeover_revision:
        run.violations.append(Violation("harness", new.name, f"freeze {k}",
                                        "lost its lease while frozen for the quiet window"))
    run.pause(2.0)  # the deposed leader now runs beside the new one
    d.launches = [(t, tid) for t, _fw, tid, _a in world.lm.launches() if t >= d.thawed_at]
    deposed.append(d)


def faults(run: Run) -> None:
    short = run.options.short
    kills = SHORT_KILLS if short else FULL_KILLS
    freezes = SHORT_FREEZES if short else FULL_FREEZES
    budget = None if run.options.minutes is None else run.options.minutes * 60
    start = time.monotonic()
    kill_times: dict[str, list[float]] = {"takeover_seconds": [], "ready_seconds": [],
                                          "first_launch_seconds": []}
    freeze_out: dict[str, Any] = {"takeover_seconds": [], "pending_intents_at_freeze": [],
                                  "skipped": 0}
    deposed: list[Deposed] = []
    plan = ["kill"] * kills + ["freeze"] * freezes
    run.rng.shuffle(plan)
    for k, what in enumerate(plan):
        if budget is not None and time.monotonic() - start > budget:
            break
        run.pause(run.rng.uniform(0.5, 2.0))
        if what == "kill":
            _kill(run, k, kill_times)
        else:
            _freeze(run, k, deposed, freeze_out)
        run.check_alive()
    for d in deposed:
        # A launch of the deposed leader's intents may come late: look until now.
        d.launches = [(t, tid) for t, _fw, tid, _a in run.world.lm.launches()
                      if t >= d.thawed_at]
        run.violations += check_deposed(d)
    run.figures.update({
        "lease_ttl_seconds": LEASE_SECONDS, "bound_seconds": BOUND_SECONDS,
        "kills": len(kill_times["takeover_seconds"]),
        "kill_takeover_seconds": seconds_summary(kill_times["takeover_seconds"]),
        "kill_ready_seconds": seconds_summary(kill_times["ready_seconds"]),
        "kill_first_launch_seconds": seconds_summary(kill_times["first_launch_seconds"]),
        "freezes": len(deposed), "freezes_skipped": freeze_out["skipped"],
        "freeze_takeover_seconds": seconds_summary(freeze_out["takeover_seconds"]),
        "pending_intents_at_freeze": freeze_out["pending_intents_at_freeze"],
        "deposed_quiet_window_revisions": [d.revision_moved for d in deposed],
        "deposed_launches_after_thaw": sum(
            1 for d in deposed for _, tid in d.launches if tid in d.old_intents),
    })


def run(options: Options) -> Report:
    return execute("leader_kill", options, faults,
                   config=WorldConfig(controllers=3, lease_seconds=LEASE_SECONDS))


SCENARIO = Scenario("leader_kill", "three replicas: kill -9 the leader, and freeze it past "
                                   "its lease then thaw it (fenced, launches nothing)", run)
