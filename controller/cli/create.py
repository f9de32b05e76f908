"""`docket create job NAME --from cronjob/NAME`: run a CronJob now, as `kubectl create job
--from=cronjob/NAME` does. (`docket create secret NAME --from-literal/--from-file`: see
controller/cli/_secrets.py.)

The Job is the CronJob's jobTemplate, owned by the CronJob exactly like a scheduled run (owner
reference with its uid, the `docket.dev/cronjob` label, `docket.dev/scheduled-time` = now in
the CronJob's zone; `controller/cli/_cronjobs.py`), so the CronJob counts it as active (Forbid
skips a slot while it runs), prunes it with its history, and deletes it with itself.

It is written in one etcd transaction that holds only if the Job's key does not exist and the
CronJob's spec key still has the revision it was built from: an existing Job is never
overwritten, and a CronJob changed or re-created meanwhile (another uid) never gets a Job built
from its old template or owned by its old uid.
"""

from __future__ import annotations

import argparse

from controller.cli._output import add_namespace_argument, add_store_arguments, guarded

NAME = "create"
HELP = ("Create a Job from a CronJob's template now (a manual run, owned by the CronJob), "
        "or a Secret from literals and files.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controller.cli._secrets import add_create_arguments

    parser.add_argument("kind", metavar="KIND", choices=("job", "secret"),
                        help="What to create: job or secret.")
    parser.add_argument("name", metavar="NAME",
                        help="Name of the new Job or Secret (a DNS-1123 label), or NS/NAME.")
    parser.add_argument("--from", dest="source", default=None, metavar="cronjob/NAME",
                        help="job: the CronJob whose jobTemplate to run, in the Job's "
                             "namespace (required).")
    add_create_arguments(parser)
    add_namespace_argument(parser)
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return guarded(NAME, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from controller.api import CronJob, InvalidObject, encode_object
    from controller.cli._cronjobs import manual_job
    from controller.cli._output import CommandError, open_store, resolve_kind, resolve_name
    from controller.reconcile.cronjob import SCHEDULED_TIME
    from controller.store import Conflict, Expect, Put

    if args.kind == "secret":
        from controller.cli._secrets import create

        return create(args)
    if args.source is None:
        raise CommandError("a job needs --from cronjob/NAME")
    if args.from_literal or args.from_file:
        raise CommandError("--from-literal and --from-file are for secrets")
    source_kind, sep, source_name = args.source.partition("/")
    if not sep or resolve_kind(source_kind).plural != "cronjobs":
        raise CommandError(f"--from {args.source!r}: give cronjob/NAME (a Job can only be "
                           "created from a CronJob)")
    namespace, name = resolve_name(args.name, args.namespace)
    _, cronjob_name = resolve_name(source_name, namespace)
    what = f"job {namespace}/{name}"
    with open_store(args) as store:
        stored = store.get("cronjobs", namespace, cronjob_name)
        if stored is None:
            raise CommandError(f"cronjob {namespace}/{cronjob_name} not found (no key "
                               f"{store.keys.object('cronjobs', namespace, cronjob_name)})")
        cronjob = stored.object
        if isinstance(cronjob, InvalidObject):
            raise CommandError(f"cronjob {namespace}/{cronjob_name} is invalid, so it has no "
                               f"template to run: {cronjob.message}")
        assert isinstance(cronjob, CronJob)
        job = manual_job(cronjob, stored.uid, name, datetime.now(UTC))
        key = store.keys.object("jobs", namespace, name)
        try:
            store.commit([Put(key, encode_object(job))],
                         [Expect(key, 0), Expect(stored.key, stored.mod_revision)])
        except Conflict:
            if store.get_raw(key) is not None:
                raise CommandError(f"{what} already exists ({key}); nothing was written. "
                                   "Pick another name, or delete it first") from None
            raise CommandError(f"cronjob {namespace}/{cronjob_name} changed while the Job was "
                               "being created; nothing was written. Run the command again"
                               ) from None
    print(f"{what} created from cronjob {namespace}/{cronjob_name} (scheduled-time "
          f"{job.metadata.annotations[SCHEDULED_TIME]})")
    return 0
