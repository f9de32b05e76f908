"""The CronJob planner: tables of its rules, then whole runs under clock jumps and crashes.

`World` plays etcd and the executor: DeleteJob actions are applied one by one, then CreateJob
and WriteStatus in one transaction that fails when the Job key exists or the status changed
since it was read. A crash stops applying a plan at any point; planning then starts again
from what was committed. The clock is injected; nothing here reads a real one."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api import (
    CronJob,
    CronJobStatus,
    InvalidObject,
    JobPhase,
    ObjectInvalid,
    Problem,
    decode_object,
)
from controller.reconcile.actions import DeleteOwnerData, WriteStatus
from controller.reconcile.cronjob import (
    CRONJOB_LABEL,
    SCHEDULED_TIME,
    CreateJob,
    CronJobInput,
    CronJobPlan,
    DeleteJob,
    OwnedJob,
    plan_cronjob,
)
from controller.reconcile.schedule import Schedule, slot_id, slot_instant

NS, NAME, UID, REV = "default", "tick", 500, 501
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # a Thursday


def cronjob(name: str = NAME, **spec: Any) -> CronJob:
    body: dict[str, Any] = {
        "schedule": "*/15 * * * *",
        "jobTemplate": {"metadata": {"labels": {"team": "a"}, "annotations": {"note": "n"}},
                        "spec": {"template": {"command": "echo tick"}}},
    }
    body.update(spec)
    return CronJob.model_validate({"apiVersion": "docket.dev/v1", "kind": "CronJob",
                                   "metadata": {"name": name, "namespace": NS}, "spec": body})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def owned(slot: datetime, phase: JobPhase | None = None, *, uid: int = UID,
          done: datetime | None = None, name: str | None = None) -> OwnedJob:
    return OwnedJob(name=name or f"{NAME}-{slot_id(slot)}", owner_uid=uid, mod_revision=7,
                    scheduled_time=slot, phase=phase, completion_time=done)


def plan(spec: CronJob | InvalidObject | None, now: datetime,
         status: CronJobStatus | None = None, jobs: tuple[OwnedJob, ...] = (),
         name: str = NAME) -> CronJobPlan:
    return plan_cronjob(CronJobInput(NS, name, spec, REV, UID, status, jobs, now))


def seen(through: datetime, **fields: Any) -> CronJobStatus:
    """A status as a previous pass left it."""
    return CronJobStatus(uid=UID, observed_revision=REV, phase="Active",
                         scheduled_through=through, **fields)


def creates(p: CronJobPlan) -> list[CreateJob]:
    return [a for a in p.actions if isinstance(a, CreateJob)]


def deletes(p: CronJobPlan) -> list[tuple[str, str]]:
    return [(a.name, a.reason) for a in p.actions if isinstance(a, DeleteJob)]


# -- tables ----------------------------------------------------------------------------------

def test_first_look_owes_nothing_and_wakes_at_the_next_slot() -> None:
    p = plan(cronjob(), at(7))
    assert creates(p) == []
    assert p.status is not None
    assert p.status.scheduled_through == at(7) and p.status.next_schedule_time == at(15)
    assert p.status.phase == "Active"
    assert p.requeue_after == 8 * 60


def test_a_slot_creates_its_job_with_labels_annotations_and_owner() -> None:
    spec = cronjob(timeZone="Europe/Paris")
    p = plan(spec, at(15) + timedelta(seconds=2), seen(at(7)))
    [create] = creates(p)
    assert create.name == f"tick-{slot_id(at(15))}" == create.job.metadata.name
    assert create.job.metadata.labels == {"team": "a", CRONJOB_LABEL: NAME}
    assert create.job.metadata.annotations == {"note": "n",
                                               SCHEDULED_TIME: "2026-01-01T13:15:00+01:00"}
    assert create.job.spec == spec.spec.job_template.spec
    assert (create.owner.kind, create.owner.name, create.owner.uid) == ("CronJob", NAME, UID)
    assert p.status is not None and p.actions[-1] == WriteStatus(p.status)
    assert p.status.active == [create.name] and p.status.last_schedule_time == at(15)
    assert p.status.scheduled_through == at(15) and p.status.next_schedule_time == at(30)
    assert p.requeue_after == pytest.approx(15 * 60 - 2)


def test_replanning_what_was_committed_does_nothing() -> None:
    first = plan(cronjob(), at(16), seen(at(7)))
    [_create] = creates(first)
    again = plan(cronjob(), at(16), first.status, (owned(at(15)),))
    assert again.actions == ()


def test_a_job_already_there_is_neither_created_again_nor_counted() -> None:
    """The status read is older than the Job (the transaction committed both; the informer
    has shown only the Job): nothing is created and the slot is not missed."""
    p = plan(cronjob(), at(16), seen(at(7)), (owned(at(15)),))
    assert creates(p) == [] and p.missed == {}
    assert p.status is not None and p.status.last_schedule_time == at(15)
    assert p.status.scheduled_through == at(15) and p.status.active == [f"tick-{slot_id(at(15))}"]


def test_a_year_down_runs_the_most_recent_slot_once_and_counts_the_rest() -> None:
    now = at(365 * 1440 + 3)
    p = plan(cronjob(), now, seen(at(0)))
    [create] = creates(p)
    assert create.scheduled_time == at(365 * 1440)
    assert p.missed == {"MissedDuringDowntime": 365 * 96 - 1}
    assert p.status is not None and p.status.missed == p.missed


@pytest.mark.parametrize(("late_seconds", "created"), [(0, True), (60, True), (61, False)])
def test_starting_deadline(late_seconds: int, created: bool) -> None:
    p = plan(cronjob(startingDeadlineSeconds=60), at(15) + timedelta(seconds=late_seconds),
             seen(at(0)))
    assert bool(creates(p)) is created
    assert p.missed == ({} if created else {"TooLate": 1})


def test_after_downtime_the_deadline_applies_to_the_most_recent_slot() -> None:
    p = plan(cronjob(startingDeadlineSeconds=300), at(62), seen(at(0)))
    assert [c.scheduled_time for c in creates(p)] == [at(60)]
    assert p.missed == {"MissedDuringDowntime": 3}


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_concurrency_policies_with_a_job_still_running(policy: str) -> None:
    running = owned(at(0), JobPhase.RUNNING)
    p = plan(cronjob(concurrencyPolicy=policy), at(15), seen(at(0), last_schedule_time=at(0),
                                                            active=[running.name]), (running,))
    assert p.status is not None
    if policy == "Allow":
        assert len(creates(p)) == 1 and deletes(p) == []
        assert p.status.active == [running.name, creates(p)[0].name]
    elif policy == "Forbid":
        assert creates(p) == [] and p.missed == {"ConcurrencyForbid": 1}
        assert p.status.active == [running.name]
        assert p.status.scheduled_through == at(15)
    else:
        assert deletes(p) == [(running.name, "Replaced")]
        assert isinstance(p.actions[0], DeleteJob) and isinstance(p.actions[1], CreateJob)
        assert p.status.active == [creates(p)[0].name]


def test_forbid_runs_once_the_previous_job_finished() -> None:
    done = owned(at(0), JobPhase.SUCCEEDED, done=at(10))
    p = plan(cronjob(concurrencyPolicy="Forbid"), at(15), seen(at(0)), (done,))
    assert len(creates(p)) == 1


def test_replace_resumes_after_a_crash_either_side_of_the_creation() -> None:
    spec = cronjob(concurrencyPolicy="Replace")
    old = owned(at(0), JobPhase.RUNNING)
    first = plan(spec, at(15), seen(at(0), last_schedule_time=at(0)), (old,))
    # Crash after the deletion, before the creation: the slot is still owed.
    p = plan(spec, at(15), seen(at(0), last_schedule_time=at(0)), ())
    assert [c.name for c in creates(p)] == [c.name for c in creates(first)]
    # Crash after the creation, before the deletion: the old Job is deleted now.
    new = owned(at(15))
    p = plan(spec, at(16), first.status, (old, new))
    assert creates(p) == [] and deletes(p) == [(old.name, "Replaced")]


def test_suspend_creates_nothing_and_resuming_runs_at_most_the_latest_slot() -> None:
    status = seen(at(0))
    for minute in (15, 31, 47, 64):
        p = plan(cronjob(suspend=True), at(minute), status)
        assert creates(p) == []
        assert p.status is not None and p.status.phase == "Suspended"
        status = p.status
    assert status.missed == {"Suspended": 3}  # 15, 30, 45; 60 is kept for the resume
    resumed = plan(cronjob(), at(70), status)
    assert [c.scheduled_time for c in creates(resumed)] == [at(60)]
    assert resumed.status is not None and resumed.status.phase == "Active"
    late = plan(cronjob(startingDeadlineSeconds=60), at(70), status)
    assert creates(late) == [] and late.missed == {"TooLate": 1}


def test_history_limits_delete_the_oldest_finished_jobs_first() -> None:
    jobs = tuple(owned(at(15 * i), phase) for i, phase in enumerate(
        [JobPhase.SUCCEEDED] * 5 + [JobPhase.FAILED] * 3 + [JobPhase.RUNNING]))
    spec = cronjob(successfulJobsHistoryLimit=3, failedJobsHistoryLimit=1)
    p = plan(spec, at(125), seen(at(120)), jobs)
    assert deletes(p) == [(jobs[0].name, "HistoryLimit"), (jobs[1].name, "HistoryLimit"),
                          (jobs[5].name, "HistoryLimit"), (jobs[6].name, "HistoryLimit")]
    assert p.status is not None and p.status.active == [jobs[8].name]
    assert p.status.last_successful_time == at(60)


def test_deleting_the_cronjob_deletes_its_jobs_then_its_status() -> None:
    jobs = (owned(at(15), JobPhase.RUNNING), owned(at(0), JobPhase.SUCCEEDED))
    p = plan(None, at(20), seen(at(15)), jobs)
    assert deletes(p) == [(jobs[1].name, "OwnerDeleted"), (jobs[0].name, "OwnerDeleted")]
    assert plan(None, at(21), seen(at(15))).actions == (
        DeleteOwnerData("cronjobs", NS, NAME),)
    assert plan(None, at(21)).actions == ()


def test_jobs_of_an_older_incarnation_are_deleted_and_hold_their_slot() -> None:
    stale = owned(at(15), JobPhase.RUNNING, uid=UID - 100)
    p = plan(cronjob(), at(16), seen(at(7)), (stale,))
    assert deletes(p) == [(stale.name, "Superseded")] and creates(p) == []
    assert p.status is not None and p.status.scheduled_through == at(7)
    assert len(creates(plan(cronjob(), at(17), p.status))) == 1


def test_a_clock_that_jumps_back_repeats_nothing() -> None:
    status = plan(cronjob(), at(16), seen(at(7))).status
    p = plan(cronjob(), at(-600), status, (owned(at(15)),))
    assert creates(p) == [] and p.actions == ()


@pytest.mark.parametrize("key", [False, True])
def test_docket_validate_reports_a_name_too_long_at_metadata_name(key: bool) -> None:
    doc = cronjob().model_dump(by_alias=True, exclude_none=True, mode="json")
    name = "c" * 53
    if key:  # the name comes from the etcd key
        del doc["metadata"]["name"]
    else:
        doc["metadata"]["name"] = name
    with pytest.raises(ObjectInvalid) as exc:
        decode_object(doc, plural="cronjobs", namespace=NS, name=name if key else None)
    assert [p.path for p in exc.value.problems] == ["metadata.name"]


@pytest.mark.parametrize("length", [52, 53])
def test_a_name_must_leave_room_for_the_suffix(length: int) -> None:
    name = "c" * length
    p = plan(cronjob(), at(16), seen(at(7)), name=name)
    assert p.status is not None
    if length == 52:
        [create] = creates(p)
        assert len(create.name) <= 63
    else:
        assert creates(p) == [] and p.status.phase == "Invalid"
        cond = p.status.condition("Invalid")
        assert cond is not None and "metadata.name" in cond.message


def test_an_invalid_spec_names_its_field_and_acts_on_nothing() -> None:
    bad = InvalidObject("CronJob", NS, NAME, [Problem("spec.schedule", "invalid")], b"")
    jobs = tuple(owned(at(15 * i), JobPhase.SUCCEEDED) for i in range(6))
    p = plan(bad, at(100), seen(at(0)), jobs)
    assert creates(p) == [] and deletes(p) == []
    assert p.status is not None and p.status.phase == "Invalid"
    assert p.status.next_schedule_time is None and p.requeue_after is None
    cond = p.status.condition("Invalid")
    assert cond is not None and cond.message == "spec.schedule: invalid"
    fixed = plan(cronjob(), at(101), p.status, jobs)
    assert fixed.status is not None and fixed.status.phase == "Active"
    cond = fixed.status.condition("Invalid")
    assert cond is not None and cond.status == "False"


def test_a_schedule_the_planner_cannot_use_is_invalid() -> None:
    spec = cronjob()
    # Accepted when it was validated, unknown to this zoneinfo (tzdata differs by host).
    spec = spec.model_copy(update={"spec": spec.spec.model_copy(update={"time_zone": "Nowhere"})})
    p = plan(spec, at(16), seen(at(7)))
    cond = p.status.condition("Invalid") if p.status else None
    assert cond is not None and cond.message.startswith("spec.timeZone:")


# -- DST, through the planner, with an injected clock ----------------------------------------

DST_RUNS = [
    ("Europe/Paris", datetime(2026, 3, 28, 20, tzinfo=UTC)),
    ("Europe/Paris", datetime(2026, 10, 24, 20, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 3, 8, 2, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 11, 1, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("expression", ["0 * * * *", "30 2 * * *", "*/15 * * * *"])
@pytest.mark.parametrize(("zone", "start"), DST_RUNS)
def test_across_dst_every_local_time_runs_once(zone: str, start: datetime,
                                               expression: str) -> None:
    world = World(cronjob(schedule=expression, timeZone=zone))
    world.now = start
    while world.now < start + timedelta(hours=12):
        world.tick()
        world.now += timedelta(minutes=1)
    created = [slot_instant(int(n.rsplit("-", 1)[1])) for n in world.created]
    schedule = Schedule.parse(expression, zone)
    expected = []
    t = schedule.next_slot(start)
    while t is not None and t < world.now:
        expected.append(t)
        t = schedule.next_slot(t)
    assert created == expected
    walls = [schedule.local(t).strftime("%H:%M") for t in created]
    assert len(set(walls)) == len(walls), "a local time ran twice"
    assert world.status is not None and sum(world.status.missed.values()) == 0


# -- whole runs: clock jumps, crashes, stale reads -------------------------------------------

@dataclass
class World:
    """etcd as the executor sees it, and the clock."""

    spec: CronJob
    now: datetime = T0
    status: CronJobStatus | None = None
    status_rev: int = 0
    jobs: dict[str, OwnedJob] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    history: list[CronJobStatus | None] = field(default_factory=list)

    def input(self, stale: bool = False) -> tuple[CronJobInput, int]:
        status, rev = self.status, self.status_rev
        if stale and self.history:
            status, rev = self.history[-1], rev - 1
        inp = CronJobInput(NS, NAME, self.spec, REV, UID, status, tuple(self.jobs.values()),
                           self.now)
        return inp, rev

    def apply(self, p: CronJobPlan, read_rev: int, crash_after: int | None = None) -> None:
        steps = 0
        for a in p.actions:
            if crash_after is not None and steps >= crash_after:
                return
            if isinstance(a, DeleteJob):
                job = self.jobs.get(a.name)
                if job is not None and job.mod_revision == a.expected_mod_revision:
                    del self.jobs[a.name]
                steps += 1
        if crash_after is not None and steps >= crash_after:
            return
        create = next((a for a in p.actions if isinstance(a, CreateJob)), None)
        write = next((a for a in p.actions if isinstance(a, WriteStatus)), None)
        if read_rev != self.status_rev:
            return  # the transaction's compares fail: nothing of it is written
        if create is not None and create.name in self.jobs:
            raise AssertionError(f"planned {create.name} again from the state it committed")
        if create is not None:
            self.jobs[create.name] = OwnedJob(create.name, UID, 1, create.scheduled_time)
            self.created.append(create.name)
        if write is not None:
            assert isinstance(write.status, CronJobStatus)
            self.history.append(self.status)
            self.status, self.status_rev = write.status, self.status_rev + 1

    def tick(self, stale: bool = False, crash_after: int | None = None) -> CronJobPlan:
        inp, rev = self.input(stale)
        p = plan_cronjob(inp)
        assert p.requeue_after is not None and p.requeue_after > 0, "woken in the past"
        self.apply(p, rev, crash_after)
        return p

    def finish_some(self, which: int) -> None:
        active = sorted(n for n, j in self.jobs.items() if j.phase is None)
        if active:
            name = active[which % len(active)]
            phase = JobPhase.SUCCEEDED if which % 3 else JobPhase.FAILED
            self.jobs[name] = replace(self.jobs[name], phase=phase, completion_time=self.now,
                                      mod_revision=self.jobs[name].mod_revision + 1)


SCHEDULES = ["*/15 * * * *", "0 * * * *", "30 2 * * *", "*/7 1-3 * * *", "0 9 * * MON-FRI"]
STARTS = [datetime(2026, 3, 28, 18, tzinfo=UTC), datetime(2026, 10, 24, 18, tzinfo=UTC),
          datetime(2026, 3, 7, 22, tzinfo=UTC), datetime(2026, 10, 31, 22, tzinfo=UTC)]
ZONES = ["Europe/Paris", "America/New_York", "UTC"]
JUMPS = [timedelta(seconds=s) for s in (0, 20, 60, 300, 900)] + [
    timedelta(hours=3), timedelta(days=2), -timedelta(minutes=10), -timedelta(hours=5)]


@settings(max_examples=200, deadline=timedelta(seconds=5), derandomize=True)
@given(expression=st.sampled_from(SCHEDULES), zone=st.sampled_from(ZONES),
       start=st.sampled_from(STARTS), policy=st.sampled_from(["Allow", "Forbid", "Replace"]),
       deadline=st.sampled_from([None, 60, 3600]), data=st.data())
def test_at_most_one_job_per_slot_whatever_happens(expression: str, zone: str,
                                                   start: datetime, policy: str,
                                                   deadline: int | None,
                                                   data: st.DataObject) -> None:
    extra: dict[str, Any] = {"startingDeadlineSeconds": deadline} if deadline else {}
    specs = [cronjob(schedule=expression, timeZone=zone, concurrencyPolicy=policy,
                     suspend=s, successfulJobsHistoryLimit=1, **extra) for s in (False, True)]
    world = World(specs[0], now=start)
    schedule = Schedule.parse(expression, zone)
    for _ in range(60):
        event = data.draw(st.integers(0, 9))
        if event <= 4:
            world.now += data.draw(st.sampled_from(JUMPS))
            world.tick()
        elif event == 5:  # a crash part-way through a plan, then a restart
            world.tick(crash_after=data.draw(st.integers(0, 3)))
        elif event == 6:  # the informer shows the status before the last write
            world.tick(stale=True)
        elif event == 7:
            world.finish_some(data.draw(st.integers(0, 10)))
        else:
            world.spec = specs[data.draw(st.integers(0, 1))]
    names = Counter(world.created)
    assert all(n == 1 for n in names.values()), f"a slot ran twice: {names}"
    for name in names:
        slot = slot_instant(int(name.rsplit("-", 1)[1]))
        assert schedule.prev_slot(slot) == slot, f"{name} is not a slot"
    committed = [s for s in [*world.history, world.status] if s is not None]
    if committed:
        # Every slot accounted for was created or counted missed, once.
        first, last = committed[0].scheduled_through, committed[-1].scheduled_through
        assert first is not None and last is not None
        assert len(names) + sum(committed[-1].missed.values()) == schedule.count(first, last)


@settings(max_examples=150, deadline=timedelta(seconds=5), derandomize=True)
@given(expression=st.sampled_from(SCHEDULES), zone=st.sampled_from(ZONES),
       start=st.sampled_from(STARTS), data=st.data())
def test_allow_without_deadline_runs_every_slot_while_up(expression: str, zone: str,
                                                         start: datetime,
                                                         data: st.DataObject) -> None:
    world = World(cronjob(schedule=expression, timeZone=zone), now=start)
    schedule = Schedule.parse(expression, zone)
    world.tick()
    up_slots: list[datetime] = []
    for _ in range(40):
        slot = schedule.next_slot(world.now)
        assert slot is not None
        following = schedule.next_slot(slot)
        assert following is not None
        if data.draw(st.integers(0, 7)) == 0:  # down: the clock moves on unseen
            world.now = slot + data.draw(st.sampled_from(JUMPS[:6])) + (following - slot) * 3
            world.tick()
            continue
        # Up: at least one tick inside [slot, next slot), maybe after crashes or stale reads.
        world.now = slot + (following - slot) * data.draw(st.sampled_from([0, 0.01, 0.5]))
        up_slots.append(slot)
        for _ in range(data.draw(st.integers(0, 2))):
            world.tick(stale=data.draw(st.booleans()), crash_after=data.draw(
                st.sampled_from([None, 0, 1])))
        world.tick()
        if data.draw(st.booleans()):
            world.finish_some(data.draw(st.integers(0, 10)))
    created = Counter(slot_instant(int(n.rsplit("-", 1)[1])) for n in world.created)
    assert all(n == 1 for n in created.values())
    missing = [s for s in up_slots if s not in created]
    assert missing == [], f"slots while up without a Job: {missing}"
