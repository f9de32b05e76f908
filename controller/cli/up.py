"""`docket up`: the whole system on one machine — embedded etcd, embedded Mesos, controller.

Ports are the ones each tool's users expect (etcd 2379, Mesos master 5050), so a bare
`etcdctl` works. State lives in a data dir so a restart keeps every object. Ctrl-C or SIGTERM
stops everything cleanly.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

NAME = "up"
HELP = "Start embedded etcd, the embedded Mesos and the controller in one command."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=".docket-data",
                        help="Where etcd data and task sandboxes live (default: .docket-data).")
    parser.add_argument("--etcd-port", type=int, default=2379, help="etcd client port (2379).")
    parser.add_argument("--etcd-peer-port", type=int, default=2380,
                        help="etcd peer port (2380).")
    parser.add_argument("--mesos-port", type=int, default=5050,
                        help="Embedded Mesos master port (5050).")
    parser.add_argument("--metrics-port", type=int, default=9102,
                        help="Controller metrics and health port (9102).")


def _etcdctl() -> str:
    beside = Path(sys.executable).parent / "etcdctl"
    if shutil.which("etcdctl") == str(beside) or not beside.exists():
        return "etcdctl"
    return str(beside)


def run(args: argparse.Namespace) -> int:
    from controller.store.etcd_server import EtcdServer, EtcdServerError, port_in_use

    for port, flag in ((args.etcd_port, "--etcd-port"), (args.etcd_peer_port, "--etcd-peer-port")):
        if port_in_use(port):
            print(f"docket up: port {port} is already in use (change it with {flag})",
                  file=sys.stderr)
            return 1
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    etcd = EtcdServer(data_dir=data / "etcd", client_port=args.etcd_port,
                      peer_port=args.etcd_peer_port, log_path=data / "etcd.log")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        etcd.start()
    except EtcdServerError as exc:
        print(f"docket up: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"etcd       running on {etcd.endpoint} "
              f"(data in {etcd.data_dir}, log {etcd.log_path})")
        print("mesos      the embedded Mesos (controller/localmesos) is not available yet: "
              "not started")
        print("controller not available yet: not started")
        print()
        print("Objects can be stored and validated already:")
        print(f"  {_etcdctl()} --endpoints {etcd.endpoint} put /docket/jobs/default/hello "
              f"\"$(cat deploy/examples/hello.yaml)\"")
        print("Press Ctrl-C to stop.", flush=True)
        while not stop.wait(0.5):
            if not etcd.running:
                print("docket up: etcd exited unexpectedly; see its log", file=sys.stderr)
                return 1
    finally:
        etcd.stop()
        print("stopped", flush=True)
    return 0
