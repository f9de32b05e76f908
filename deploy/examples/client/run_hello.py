"""Sync runner: submit a Job and block until it ends.

    python deploy/examples/client/run_hello.py --etcd 127.0.0.1:2379 [--name hello]
        [--command "echo hello"] [--completions 3] [--timeout 60]

Prints the final phase and one line per execution. Exit status: 0 when the Job Succeeded,
1 when it Failed, 2 when it did not end within --timeout.
"""

from __future__ import annotations

import sys

from _common import arguments, job

from controller.client import Client, JobFailed, JobResult


def show(result: JobResult) -> None:
    print(f"job {result.namespace}/{result.name}: {result.status.phase.value}")
    for r in result.executions:
        print(f"  index {r.index} attempt {r.attempt}: {r.state} exit {r.exit_code}")


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--name", default="hello")
    parser.add_argument("--command", default="echo hello")
    parser.add_argument("--completions", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    hello = job(args.name, args.command, namespace=args.namespace,
                completions=args.completions)
    with Client(args.etcd, prefix=args.prefix) as docket:
        try:
            show(docket.run(hello, timeout=args.timeout))
        except JobFailed as failed:
            print(failed, file=sys.stderr)
            show(failed.result)
            return 1
        except TimeoutError as exc:
            print(exc, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
