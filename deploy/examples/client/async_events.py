"""Async runner with event handlers: await a Job in asyncio and print its events as they come.

    python deploy/examples/client/async_events.py --etcd 127.0.0.1:2379 [--name events]

One handler prints every execution record of the Job as it is written (launch, running,
finished, with the exit code); another, a coroutine, prints each change of its phase. The
watch runs in the client's thread and hands events to the loop; nothing blocks the loop.
Exit status: 0 when the Job Succeeded, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys

from _common import arguments, job

from controller.client import Client, Event, ExecutionEvent, JobFailed, Selector, StatusEvent


async def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--name", default="events")
    parser.add_argument("--completions", type=int, default=2)
    args = parser.parse_args()
    phases: list[str] = []
    ended = asyncio.Event()  # set by the phase handler when the Job's last phase arrives

    def is_execution(event: Event) -> bool:
        return isinstance(event, ExecutionEvent) and event.record is not None

    def print_execution(event: Event) -> None:
        assert isinstance(event, ExecutionEvent) and event.record is not None
        print(f"execution {event.task_id}: {event.record.state}"
              + (f" exit {event.record.exit_code}" if event.record.exit_code is not None
                 else ""), flush=True)

    def phase_changed(event: Event) -> bool:
        return isinstance(event, StatusEvent) and event.phase not in (None, *phases[-1:])

    async def print_phase(event: Event) -> None:
        assert isinstance(event, StatusEvent) and event.phase is not None
        phases.append(event.phase)
        print(f"phase {event.phase}", flush=True)
        if event.phase in ("Succeeded", "Failed"):
            ended.set()

    mine = Selector(kinds=["Job"], namespace=args.namespace, name=args.name)
    with Client(args.etcd, prefix=args.prefix) as docket:
        docket.on(is_execution, print_execution, selector=mine)
        docket.on(phase_changed, print_phase, selector=mine)
        try:
            result = await docket.run_async(
                job(args.name, "echo hi", namespace=args.namespace,
                    completions=args.completions), timeout=60)
        except JobFailed as failed:
            print(failed, file=sys.stderr)
            return 1
        await asyncio.wait_for(ended.wait(), 10)  # the handlers may still be on their way
        print(f"done: {result.status.phase.value}, {len(result.executions)} execution(s)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
