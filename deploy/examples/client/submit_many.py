"""Promise runner: submit several Jobs at once and handle each as it ends.

    python deploy/examples/client/submit_many.py --etcd 127.0.0.1:2379 [-n 5]

Submits `batch-0` .. `batch-<n-1>` (each `echo batch <i>`; `--fail I` makes Job I exit 1),
then prints one line per Job in the order they end. Exit status: the number of Jobs that
did not succeed (0 when all did).
"""

from __future__ import annotations

import sys
from concurrent.futures import Future, as_completed

from _common import arguments, job

from controller.client import Client, JobFailed, JobResult


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("-n", type=int, default=5, help="how many Jobs")
    parser.add_argument("--fail", type=int, action="append", default=[],
                        help="index of a Job that should fail (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    bad = 0
    with Client(args.etcd, prefix=args.prefix) as docket:
        futures: dict[Future[JobResult], str] = {}
        for i in range(args.n):
            command = "exit 1" if i in args.fail else f"echo batch {i}"
            name = f"batch-{i}"
            futures[docket.submit(job(name, command, namespace=args.namespace))] = name
        for future in as_completed(futures, timeout=args.timeout):
            try:
                result = future.result()
                print(f"{futures[future]}: {result.status.phase.value} "
                      f"({len(result.executions)} execution(s))")
            except JobFailed as failed:
                bad += 1
                print(f"{futures[future]}: Failed ({failed})")
    return bad


if __name__ == "__main__":
    sys.exit(main())
