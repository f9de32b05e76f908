"""Scenario 4: agents partitioned and returning, while the mixed workload runs plus a Job of
long tasks (so that tasks are still running when their agent returns). One partition in the
suite; at full length, one every few seconds over the budget (at most `FULL_MAX`).

Each partition cuts off the agent running the most Service instances and Job tasks: Mesos
reports them TASK_UNREACHABLE while they go on running. Docket must replace them per the
kind's policy — system retries for Jobs and Queues at once, a Service's slot after its
`unreachableStrategy.inactiveAfterSeconds` — and, when the agent returns and the originals
report RUNNING again, kill the duplicates, so that each slot (a Job's index, a Service's
instance) ends with one live task and a Job index counts once. The figures give how long the
replacement and the duplicate kill took; the common invariants follow.

A slot that succeeds once is done (a Job's index, a Queue's batch): when a written-off attempt
returns TASK_FINISHED, its replacement is the duplicate to kill, and a victim whose slot has
already succeeded needs no new attempt (issue 14: the third partition of one long Job cut off
such duplicates, which the controller had left running).
"""

from __future__ import annotations

import collections
import time

from controller.localmesos import TERMINAL_STATES
from controller.reconcile.taskid import parse_task_id
from tests.chaos.invariants import Report, Violation
from tests.chaos.scenarios import Options, Scenario
from tests.chaos.scenarios.base import Run, execute, seconds_summary

FULL_MAX = 20
LONG_TASK_SECONDS = 4.0
BOUND = 30.0  # for a replacement, and for a duplicate's kill
SUCCEED_ONCE = ("Job ", "Queue ")  # kinds whose slot, once succeeded, never runs again


def _slot(task_id: str) -> tuple[str, int, int] | None:
    parts = parse_task_id(task_id)
    if parts is None:
        return None
    return f"{parts.owner.kind} {parts.owner.name}", parts.uid, parts.index


def _live_by_slot(run: Run) -> dict[tuple[str, int, int], list[str]]:
    out: dict[tuple[str, int, int], list[str]] = collections.defaultdict(list)
    for task in run.world.lm.tasks():
        slot = _slot(task.task_id)
        if slot is not None and task.state not in TERMINAL_STATES:
            out[slot].append(task.task_id)
    return out


def _succeeded_slots(run: Run) -> set[tuple[str, int, int]]:
    """Slots of the kinds whose slot succeeds once (a Job's index, a Queue's batch) with an
    attempt that finished: they run no other attempt."""
    out = set()
    for task in run.world.lm.tasks():
        slot = _slot(task.task_id)
        if (slot is not None and task.state == "TASK_FINISHED"
                and slot[0].startswith(SUCCEED_ONCE)):
            out.add(slot)
    return out


def _duplicates(run: Run) -> dict[tuple[str, int, int], list[str]]:
    """Slots with more than one live task, or with a live task although they succeeded."""
    done = _succeeded_slots(run)
    return {s: ids for s, ids in _live_by_slot(run).items() if len(ids) > 1 or s in done}


def _not_replaced(run: Run, victims: list[str]) -> list[str]:
    """Victims whose slot has not been launched again (as a later attempt) yet, nor succeeded."""
    attempts: dict[tuple[str, int, int], int] = {}
    for _t, _fw, task_id, _agent in run.world.lm.launches():
        slot, parts = _slot(task_id), parse_task_id(task_id)
        if slot is not None and parts is not None:
            attempts[slot] = max(attempts.get(slot, 0), parts.attempt)
    done = _succeeded_slots(run)
    waiting = []
    for victim in victims:
        slot, parts = _slot(victim), parse_task_id(victim)
        if (slot is not None and parts is not None and slot not in done
                and attempts.get(slot, 0) <= parts.attempt):
            waiting.append(victim)
    return waiting


def partition_once(run: Run, hold: float) -> dict[str, float]:
    world, rng = run.world, run.rng
    counts: collections.Counter[str] = collections.Counter()
    for task in world.lm.tasks():
        if task.state == "TASK_RUNNING" and task.task_id.startswith(("service.", "job.")):
            counts[task.agent_id] += 1
    agents = sorted(world.agent_ids(), key=lambda a: (-counts[a], rng.random()))
    agent = agents[0]
    victims = [t for t in world.tasks_on(agent) if _slot(t) is not None]
    world.partition_agent(agent)
    run.log(f"partitioned {agent} with {len(victims)} task(s)")
    start = time.monotonic()
    waiting = _not_replaced(run, victims)
    while waiting and time.monotonic() - start < BOUND:
        run.pause(0.1)
        waiting = _not_replaced(run, victims)
    replaced = time.monotonic() - start
    for victim in waiting:
        run.violations.append(Violation("unreachable-not-replaced", victim.split(".")[2],
                                        victim, f"no new attempt within {BOUND}s"))
    run.pause(max(0.0, hold - replaced))
    world.heal_agent(agent)
    healed = time.monotonic()
    run.log(f"healed {agent} ({len(victims)} task(s), replaced in {replaced:.2f}s)")
    duplicates = _duplicates(run)
    seen = len(duplicates)
    while duplicates and time.monotonic() - healed < BOUND:
        run.pause(0.1)
        duplicates = _duplicates(run)
    for (owner, _uid, index), ids in sorted(duplicates.items()):
        run.violations.append(Violation("duplicate-not-killed", owner, f"slot {index}",
                                        f"live: {', '.join(ids)} {BOUND}s after the heal"))
    return {"victims": len(victims), "replaced_seconds": replaced,
            "duplicates_after_heal": seen,
            "duplicates_killed_seconds": time.monotonic() - healed}


def faults(run: Run) -> None:
    full = run.options.minutes is not None
    long_job = run.workload.put_job(task_seconds=LONG_TASK_SECONDS * (3 if full else 1),
                                    completions=6 if full else 3, parallelism=3,
                                    prefix="long-")
    run.log(f"put {long_job}")
    budget = (run.options.minutes or 0) * 60
    rounds: list[dict[str, float]] = []
    for n in range(FULL_MAX if full else 1):
        if full and run.world.elapsed() > budget:
            break
        run.pause(run.rng.uniform(1.0, 2.0))  # the long Job's tasks are running by then
        hold = run.rng.uniform(4.0, 10.0) if full else run.rng.uniform(1.0, 2.0)
        rounds.append(partition_once(run, hold))
        if full and n % 3 == 2:
            run.workload.put_job(task_seconds=LONG_TASK_SECONDS * 3, completions=6,
                                 parallelism=3, prefix="long-")
    run.figures.update({
        "partitions": len(rounds),
        "tasks_cut_off": sum(int(r["victims"]) for r in rounds),
        "duplicates_after_heal": sum(int(r["duplicates_after_heal"]) for r in rounds),
        "replaced_seconds": seconds_summary([r["replaced_seconds"] for r in rounds]),
        "duplicates_killed_seconds": seconds_summary(
            [r["duplicates_killed_seconds"] for r in rounds])})


def run(options: Options) -> Report:
    return execute("partitions", options, faults)


SCENARIO = Scenario("partitions", "agents partitioned and healed: unreachable tasks replaced "
                                  "per kind, returning duplicates killed", run)
