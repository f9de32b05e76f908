"""Subscription runner: print status writes and execution records as they are written, as
JSON lines, from a given revision (or from now).

    python deploy/examples/client/subscribe.py --etcd 127.0.0.1:2379 [--kind Job]
        [--name hello] [--from-revision N] [--until-ended NAME] [--max-events N]

Each line carries the event type, kind, namespace, name, revision and the phase (status) or
state and exit code (execution). The revision of the last line + 1 is where to resume with
--from-revision: nothing is missed or repeated, even across an etcd restart. Stops after
--max-events, or once the Job --until-ended is Succeeded or Failed; otherwise runs until
Ctrl-C.
"""

from __future__ import annotations

import json
import sys

from _common import arguments

from controller.client import Client, ExecutionEvent, Selector, StatusEvent


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--kind", action="append", default=[], help="Job, CronJob, ...")
    parser.add_argument("--name")
    parser.add_argument("--from-revision", type=int)
    parser.add_argument("--until-ended", metavar="JOB")
    parser.add_argument("--max-events", type=int)
    args = parser.parse_args()
    selector = Selector(kinds=args.kind, namespace=args.namespace, name=args.name)
    seen = 0
    with Client(args.etcd, prefix=args.prefix) as docket, \
            docket.subscribe(selector, from_revision=args.from_revision) as events:
        try:
            for event in events:
                line = {"kind": event.kind, "namespace": event.namespace, "name": event.name,
                        "revision": event.revision}
                if isinstance(event, StatusEvent):
                    line.update(event="status", phase=event.phase)
                else:
                    assert isinstance(event, ExecutionEvent)
                    line.update(event="execution", task=event.task_id,
                                state=event.record.state if event.record else None,
                                exit=event.record.exit_code if event.record else None)
                print(json.dumps(line), flush=True)
                seen += 1
                if args.max_events is not None and seen >= args.max_events:
                    break
                if (isinstance(event, StatusEvent) and event.kind == "Job"
                        and event.name == args.until_ended
                        and event.phase in ("Succeeded", "Failed")):
                    break
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
