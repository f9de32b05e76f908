"""The chaos checks can fail: each invariant, fed a doctored launch log, task list, queue
source or etcd content, reports a violation naming the object, the id and the slot — and
passes on the clean version of the same evidence. No server: fast, unmarked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.reconcile.schedule import slot_id
from tests.chaos.evidence import Evidence, JobObject, MesosTask
from tests.chaos.invariants import (
    check_crons,
    check_jobs,
    check_launches,
    check_queues,
    check_records,
    check_services,
    cron_slots,
)
from tests.chaos.workload import (
    CronExpectation,
    Expected,
    JobExpectation,
    QueueExpectation,
    ServiceExpectation,
)
from tests.chaos.world import Window

T0 = datetime(2026, 11, 2, 10, 0, 30, tzinfo=UTC)
LAG = timedelta(seconds=30)


def finished(task_id: str, *states: str) -> MesosTask:
    return MesosTask(task_id, "TASK_FINISHED", (*states, "TASK_RUNNING", "TASK_FINISHED"))


def test_a_task_id_launched_twice_is_named() -> None:
    ev = Evidence(launches=["job.default.a.7.0.0", "job.default.a.7.1.0", "job.default.a.7.0.0"])
    [violation] = check_launches(ev)
    assert (violation.invariant, violation.object, violation.id) == \
        ("task-launched-twice", "Job default/a", "job.default.a.7.0.0")
    assert check_launches(Evidence(launches=["job.default.a.7.0.0"])) == []


def job_evidence(*tasks: MesosTask) -> Evidence:
    return Evidence(tasks={t.task_id: t for t in tasks}, jobs={"a": JobObject("a", 7, 1, None)})


def test_a_job_index_succeeding_twice_or_never_is_named() -> None:
    expected = Expected(jobs={"a": JobExpectation("a", 2, True)})
    clean = job_evidence(finished("job.default.a.7.0.0"), finished("job.default.a.7.1.0"))
    assert check_jobs(expected, clean, {"a": (2, [0, 1])}) == []

    twice = job_evidence(finished("job.default.a.7.0.0"), finished("job.default.a.7.0.1"))
    found = {(v.invariant, v.id) for v in check_jobs(expected, twice, {})}
    assert found == {("job-index-succeeded-twice", "index 0"),
                     ("job-index-never-succeeded", "index 1")}
    # Twice, but the first ran on a partitioned agent: Mesos could not stop it.
    excused = job_evidence(finished("job.default.a.7.0.0", "TASK_UNREACHABLE"),
                           finished("job.default.a.7.0.1"), finished("job.default.a.7.1.0"))
    assert check_jobs(expected, excused, {"a": (2, [0, 1])}) == []
    # Mesos ran each once, but Docket counted wrong.
    [wrong] = check_jobs(expected, clean, {"a": (3, [0, 1])})
    assert wrong.invariant == "job-counted-wrong" and wrong.object == "Job default/a"


def cron_evidence(now: datetime, slots: list[datetime], windows: list[Window],
                  **extra_jobs: JobObject) -> Evidence:
    jobs = {f"tick-{slot_id(s)}": JobObject(f"tick-{slot_id(s)}", 100 + n, 1, "tick")
            for n, s in enumerate(slots)}
    return Evidence(jobs={**jobs, **extra_jobs}, now=now, windows=windows)


def test_cron_slots_missed_or_run_twice_are_named_and_downtime_excuses_all_but_the_last() -> None:
    expected = Expected(crons={"tick": CronExpectation("tick", 1, T0)})
    now = T0 + timedelta(minutes=10)
    slots = cron_slots(1, T0, now)
    assert len(slots) == 10
    assert check_crons(expected, cron_evidence(now, slots, []), LAG) == []

    # Slot 3 missed while the controller was up.
    [missed] = check_crons(expected, cron_evidence(now, slots[:3] + slots[4:], []), LAG)
    assert missed.invariant == "cron-slot-missed" and missed.object == "CronJob default/tick"
    assert missed.id.startswith(f"slot {slots[3].isoformat()}")
    # Down from just before slot 3 until after slot 4: only slot 4 (the latest) must run.
    down = [Window(slots[3] - timedelta(seconds=5), slots[4] + timedelta(seconds=20), "kill")]
    assert check_crons(expected, cron_evidence(now, slots[:3] + slots[4:], down), LAG) == []
    # ... but skipping slot 4 too is a miss.
    [missed] = check_crons(expected, cron_evidence(now, slots[:3] + slots[5:], down), LAG)
    assert missed.id.startswith(f"slot {slots[4].isoformat()}")

    # Run twice: a second incarnation of a slot's Job (tasks of two uids), or a rewrite.
    ev = cron_evidence(now, slots, [])
    name = f"tick-{slot_id(slots[2])}"
    ev.tasks = {f"job.default.{name}.555.0.0": finished(f"job.default.{name}.555.0.0")}
    [twice] = check_crons(expected, ev, LAG)
    assert twice.invariant == "cron-slot-run-twice" and name in twice.id
    ev = cron_evidence(now, slots, [])
    ev.jobs[name] = JobObject(name, 1, 2, "tick")
    [twice] = check_crons(expected, ev, LAG)
    assert twice.invariant == "cron-slot-run-twice"
    # A Job for a time that is no slot.
    odd = JobObject("tick-1", 1, 1, "tick")
    [extra] = check_crons(expected, cron_evidence(now, slots, [], **{"tick-1": odd}), LAG)
    assert extra.invariant == "cron-unexpected-slot"


def queue_evidence(tasks: list[MesosTask], left: set[str], dead: set[str]) -> Evidence:
    return Evidence(tasks={t.task_id: t for t in tasks}, queue_left={"q": left},
                    queue_dead={"q": dead})


def test_queue_messages_lost_acked_without_success_or_run_twice_are_named() -> None:
    expected = Expected(queues={"q": QueueExpectation("q", "etcd", {"m1": "m1", "m2": "m2"})})
    ok = MesosTask("queue.default.q.9.0.0", "TASK_FINISHED", batch=("m1", "m2"))
    failed = MesosTask("queue.default.q.9.1.0", "TASK_FAILED", batch=("m1", "m2"))
    assert check_queues(expected, queue_evidence([ok], set(), set())) == []
    assert check_queues(expected, queue_evidence([failed], set(), {"m1", "m2"})) == []

    # Acked (gone from the source) although its only task failed.
    found = check_queues(expected, queue_evidence([failed], set(), set()))
    assert {(v.invariant, v.id) for v in found} == {("queue-message-lost", "m1"),
                                                    ("queue-message-lost", "m2")}
    assert "acked without a successful task" in found[0].detail
    # Never run, gone.
    found = check_queues(expected, queue_evidence([], set(), set()))
    assert all("never run" in v.detail for v in found) and len(found) == 2
    # Succeeded twice; dead-lettered without a failure; left behind.
    again = MesosTask("queue.default.q.9.2.0", "TASK_FINISHED", batch=("m1",))
    found = check_queues(expected, queue_evidence([ok, again], set(), set()))
    assert [(v.invariant, v.id) for v in found] == [("queue-message-succeeded-twice", "m1")]
    found = check_queues(expected, queue_evidence([], set(), {"m1", "m2"}))
    assert {v.invariant for v in found} == {"queue-message-dead-without-failure"}
    found = check_queues(expected, queue_evidence([], {"m1", "m2"}, set()))
    assert {v.invariant for v in found} == {"queue-message-unprocessed"}


def test_services_not_back_to_healthy_instances_or_with_duplicates_are_named() -> None:
    expected = Expected(services={"web": ServiceExpectation("web", 2)})

    def running(task_id: str, healthy: bool | None = True) -> MesosTask:
        return MesosTask(task_id, "TASK_RUNNING", healthy=healthy)

    def ev(*tasks: MesosTask) -> Evidence:
        return Evidence(tasks={t.task_id: t for t in tasks}, uids={("services", "web"): 4})

    assert check_services(expected, ev(running("service.default.web.4.0.0"),
                                       running("service.default.web.4.1.3"))) == []
    found = check_services(expected, ev(running("service.default.web.4.0.0"),
                                        running("service.default.web.4.0.1"),
                                        running("service.default.web.4.1.0", healthy=False)))
    assert [(v.invariant, v.id) for v in found] == [
        ("service-slot-duplicate", "slot 0"), ("service-instance-not-healthy", "slot 1")]


def test_an_update_mesos_made_but_etcd_never_recorded_is_named() -> None:
    task = MesosTask("job.default.a.7.0.0", "TASK_FINISHED", last_update=100.0)
    ev = Evidence(tasks={task.task_id: task}, records={task.task_id: "TASK_RUNNING"},
                  collected_at=200.0)
    [violation] = check_records(ev)
    assert violation.invariant == "update-not-recorded" and violation.id == task.task_id
    ev.records[task.task_id] = "TASK_FINISHED"
    assert check_records(ev) == []
    # Too recent to judge: the update may be on its way.
    ev.records[task.task_id] = "TASK_RUNNING"
    ev.collected_at = 101.0
    assert check_records(ev) == []
