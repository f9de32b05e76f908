"""`docket local-mesos`: the embedded Mesos on its own, for any Mesos client."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

NAME = "local-mesos"
HELP = "Run the embedded Mesos-compatible master and agents standalone."


def _attribute(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"attribute {text!r} must look like name=value")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5050,
                        help="Master port")
    parser.add_argument("--masters", type=int, default=1,
                        help="Masters in HA, contending for leadership in --zk; their ports count "
                             "up from --port")
    parser.add_argument("--zk", default=None, metavar="zk://HOST:PORT/PATH",
                        help="ZooKeeper URL the masters elect their leader in, as Mesos' "
                             "--zk (needed with --masters above 1).")
    parser.add_argument("--agent-port", type=int, default=None,
                        help="First real agent's port; the next agents count up (default: "
                             "the port after the masters', 5051 with one master).")
    parser.add_argument("--agents", type=int, default=1, help="Number of agents.")
    parser.add_argument("--cpus", type=float, default=4.0, help="CPUs per agent.")
    parser.add_argument("--mem", type=float, default=4096.0, help="Memory per agent, MiB.")
    parser.add_argument("--disk", type=float, default=10240.0, help="Disk per agent, MiB.")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per agent.")
    parser.add_argument("--attribute", action="append", type=_attribute, default=[],
                        metavar="NAME=VALUE", help="Agent attribute; repeatable.")
    parser.add_argument("--simulate", action="store_true",
                        help="Hollow agents: tasks spawn no process (DOCKET_SIM_DURATION, "
                             "DOCKET_SIM_EXIT_CODE set their run time and exit code).")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="Where task sandboxes live (default: a temporary directory).")
    parser.add_argument("--heartbeat-interval", type=float, default=15.0,
                        help="Seconds between HEARTBEAT events.")
    parser.add_argument("--allocation-interval", type=float, default=1.0,
                        help="Seconds between offer rounds.")
    parser.add_argument("--offer-timeout", type=float, default=None,
                        help="Rescind offers unused for this many seconds (default: never).")
    parser.add_argument("--authenticate-frameworks", action="store_true",
                        help="Require HTTP basic credentials on the scheduler API, as Mesos' "
                             "--authenticate_http_frameworks (needs --credentials).")
    parser.add_argument("--credentials", type=Path, default=None, metavar="FILE",
                        help='Accepted credentials, as Mesos\' --credentials: JSON '
                             '{"credentials": [{"principal": "...", "secret": "..."}]}.')
    parser.add_argument("--enable-faults", action="store_true",
                        help="Serve the fault-injection admin API (/admin/...: kill masters, "
                             "partition agents, drop updates). Off by default: anyone who can "
                             "reach the master could use it.")


def run(args: argparse.Namespace) -> int:
    from controller.localmesos import LocalMesos, LocalMesosConfig
    from controller.store.etcd_server import port_in_use

    if args.masters < 1 or (args.masters > 1 and not args.zk):
        print("docket local-mesos: --masters above 1 needs --zk (the masters elect their "
              "leader in ZooKeeper)", file=sys.stderr)
        return 1
    if args.zk:
        from controller.localmesos.zk import ZkUrl

        try:
            ZkUrl.parse(args.zk)
        except ValueError as exc:
            print(f"docket local-mesos: --zk {exc}", file=sys.stderr)
            return 1
    if args.agent_port is None:
        args.agent_port = args.port + args.masters if args.port else 0
    ports = [(args.port + i, "--port") for i in range(args.masters) if args.port]
    if not args.simulate:
        ports += [(args.agent_port + i, "--agent-port") for i in range(args.agents)]
    for port, flag in ports:
        if port and port_in_use(port):
            print(f"docket local-mesos: port {port} is already in use (change it with {flag})",
                  file=sys.stderr)
            return 1
    if args.authenticate_frameworks and args.credentials is None:
        print("docket local-mesos: --authenticate-frameworks needs --credentials FILE",
              file=sys.stderr)
        return 1
    from controller.localmesos.auth import CredentialsError

    try:
        lm = LocalMesos(LocalMesosConfig(
            port=args.port, masters=args.masters, zk=args.zk, agent_port=args.agent_port,
            agents=args.agents, cpus=args.cpus,
            mem=args.mem, disk=args.disk, gpus=args.gpus, attributes=dict(args.attribute),
            simulate=args.simulate, work_dir=args.work_dir,
            heartbeat_interval=args.heartbeat_interval,
            allocation_interval=args.allocation_interval, offer_timeout=args.offer_timeout,
            authenticate_frameworks=args.authenticate_frameworks, credentials=args.credentials,
            enable_faults=args.enable_faults,
        ))
    except CredentialsError as exc:
        print(f"docket local-mesos: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        lm.start()
    except Exception as exc:  # ZooKeeper unreachable, most likely: say so, not a traceback
        print(f"docket local-mesos: cannot start: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        lm.stop()
        return 1
    mode = "simulated" if args.simulate else "real"
    if args.zk:
        for i, address in enumerate(lm.master_addresses):
            print(f"Mesos master {i} (embedded, {MESOS_VERSION_TEXT}) on http://{address}",
                  flush=True)
        print(f"Masters in HA through ZooKeeper: {lm.zk_url} (leader: master "
              f"{lm.leading_master()}); {args.agents} {mode} agent(s); sandboxes in "
              f"{lm.work_dir}", flush=True)
    else:
        print(f"Mesos master (embedded, {MESOS_VERSION_TEXT}) on {lm.master_url} with "
              f"{args.agents} {mode} agent(s); sandboxes in {lm.work_dir}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        stop.wait()
    finally:
        lm.stop()
        print("stopped", flush=True)
    return 0


MESOS_VERSION_TEXT = "Mesos 1.11.0 API"
