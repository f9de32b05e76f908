"""What `get cronjobs`, `describe cronjob` and `create job --from cronjob/NAME` share about a
CronJob's Jobs: which Jobs it owns, when each was scheduled, and how a manual run is built.

A Job belongs to a CronJob through its owner reference (kind CronJob, the CronJob's name and
uid — the create_revision of its spec key), exactly as the controller reads it: a Job left by
an earlier CronJob of the same name (another uid) is not this one's. A manual run is built as
the controller builds a scheduled one (`controller/reconcile/cronjob.py`): the template's
labels and annotations, the `docket.dev/cronjob` label, the owner reference and the
`docket.dev/scheduled-time` annotation, RFC 3339 in the CronJob's zone; it also carries
`docket.dev/instantiate: manual`, as kubectl marks its manual runs, so that people can tell
the two apart.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from controller.cli._output import Entry, list_entries

if TYPE_CHECKING:
    from controller.api import CronJob, Job
    from controller.store import Store

INSTANTIATE = "docket.dev/instantiate"
"""Annotation of a Job made by `docket create job --from cronjob/NAME`: "manual"."""


def scheduled_time(entry: Entry) -> datetime | None:
    """The Job's `docket.dev/scheduled-time`, or None if it has none (or not a valid one)."""
    from controller.api import Job
    from controller.reconcile.cronjob import SCHEDULED_TIME

    job = entry.stored.object
    if not isinstance(job, Job):
        return None
    stamp = job.metadata.annotations.get(SCHEDULED_TIME)
    try:
        when = datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None
    return when if when is not None and when.tzinfo is not None else None


def is_manual(entry: Entry) -> bool:
    from controller.api import Job

    job = entry.stored.object
    return isinstance(job, Job) and job.metadata.annotations.get(INSTANTIATE) == "manual"


def owned_jobs(jobs: list[Entry], namespace: str, name: str, uid: int) -> list[Entry]:
    """The Jobs of `jobs` owned by CronJob `namespace/name` of uid `uid`, newest scheduled
    first (a Job without a scheduled time last)."""
    from controller.api import Job

    out = []
    for entry in jobs:
        job = entry.stored.object
        if entry.stored.namespace != namespace or not isinstance(job, Job):
            continue
        if any(r.kind == "CronJob" and r.name == name and r.uid == uid
               for r in job.metadata.owner_references):
            out.append(entry)
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(out, key=lambda e: (scheduled_time(e) or epoch, e.stored.name), reverse=True)


def list_jobs(store: Store, namespace: str | None) -> list[Entry]:
    from controller.api import kind_by_plural

    return list_entries(store, kind_by_plural("jobs"), namespace)


def manual_job(cronjob: CronJob, uid: int, name: str, now: datetime) -> Job:
    """The Job of a manual run of `cronjob` (uid `uid`) named `name`, requested at `now`."""
    from controller.api import Job, ObjectMeta, OwnerReference
    from controller.reconcile.cronjob import CRONJOB_LABEL, SCHEDULED_TIME

    template = cronjob.spec.job_template
    zone = zoneinfo.ZoneInfo(cronjob.spec.time_zone)
    stamp = now.astimezone(zone).replace(microsecond=0).isoformat()
    return Job(
        api_version="docket.dev/v1", kind="Job",
        metadata=ObjectMeta(
            name=name, namespace=cronjob.namespace,
            labels={**template.metadata.labels, CRONJOB_LABEL: cronjob.name},
            annotations={**template.metadata.annotations, SCHEDULED_TIME: stamp,
                         INSTANTIATE: "manual"},
            owner_references=[OwnerReference(kind="CronJob", name=cronjob.name, uid=uid)]),
        spec=template.spec)
