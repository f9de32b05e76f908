"""`docket policy`: the admission policy an operator stored at `<prefix>/policy` — whether it
is valid and why not, and the rules each namespace gets (docs/architecture.md §10).

    docket policy                  the stored policy's verdict and every namespace's rules
    docket policy -o yaml|json     the stored document itself
    docket policy validate FILE    the controller's verdict on a policy file, offline
    docket policy throttles        each throttle: NAME, MATCH, RUNNING, LIMIT, WAITING

The verdict is the controller's own (controller/policy.py `judge`): while the stored document
is invalid, the controller keeps the last valid one in force (`docket_policy_valid` is 0), or
denies nothing if none was valid since it started; this command says which problems to fix.

`throttles` counts from etcd alone, so it works without a controller: RUNNING is the
execution records (every kind, under `<prefix>/executions/`) of tasks that are live — neither
ended nor still LAUNCHING — whose object matches; WAITING is the matching LAUNCHING records,
launches written and not yet started by Mesos. That is an approximation of what is held back
by a throttle: it also counts a launch waiting for an offer that fits, and not the work an
object has not asked to launch yet. Labels are the object's metadata.labels merged with its
current template's (as the controller's match, controller/policy.py `task_labels`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.cli._output import add_store_arguments, guarded, open_store, table

if TYPE_CHECKING:
    from controller.api.policy import Policy, ResourceLimits, Rules
    from controller.store import Store

NAME = "policy"
HELP = ("Show the admission policy (<prefix>/policy): whether it is valid and why not, and "
        "each namespace's rules; validate a policy file; or list its throttles and their use.")
THROTTLES_HELP = (
    "throttles: each throttle's NAME, MATCH, RUNNING (live matching tasks, from the execution "
    "records), LIMIT (maxRunning) and WAITING (matching tasks still LAUNCHING: an "
    "approximation of those held back, which also counts launches waiting for an offer).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("show", "validate", "throttles"),
                        default="show",
                        help="show (default) the stored policy, validate FILE, or "
                             f"{THROTTLES_HELP}")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="validate: the policy file (YAML or JSON; - for stdin).")
    parser.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table",
                        help="show: the verdict and rules (table), or the stored document; "
                             "throttles: the table, or one entry per throttle.")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.action == "validate":
        return _validate(args.file)
    if args.action == "throttles":
        return get_throttles(args)
    return guarded("policy", lambda: _show(args))


def _validate(path: str | None) -> int:
    from controller.policy import judge

    if not path:
        print("docket policy validate: a FILE is needed", file=sys.stderr)
        return 2
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        print(f"docket policy validate: {exc}", file=sys.stderr)
        return 1
    policy, problems = judge(data)
    for problem in problems:
        print(f"{path}: {problem}")
    if problems:
        return 1
    assert policy is not None
    print(f"{path}: valid policy ({len(policy.spec.namespaces)} namespace(s), "
          f"{len(policy.spec.throttles)} throttle(s), {len(policy.spec.pools)} pool(s))")
    return 0


def _show(args: argparse.Namespace) -> int:
    from controller.api.policy import POLICY_KEY
    from controller.policy import judge

    with open_store(args) as store:
        key = f"{store.keys.prefix}/{POLICY_KEY}"
        found = store.get_raw(key)
        held = store.get_raw(f"{store.keys.prefix}/status/policy")
    if found is None:
        print(f"no policy at {key}: every object is admitted, every task runs under the "
              "framework's role")
        return 0
    raw, mod_revision, _ = found
    if args.output != "table":
        _print_document(raw, args.output)
        return 0
    policy, problems = judge(raw)
    print(f"KEY:       {key}")
    print(f"REVISION:  {mod_revision}")
    print(f"IN FORCE:  {_in_force(held)}")
    if problems:
        print("VALID:     false — the controller keeps the last valid policy in force "
              "(none since it started: nothing is denied)")
        print("PROBLEMS:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("VALID:     true")
    assert policy is not None
    print(_rules_table(policy))
    if policy.spec.throttles:
        print("\n" + table(["THROTTLE", "MATCH", "LIMIT"], [
            [t.name, t.match.text(), str(t.max_running)] for t in policy.spec.throttles]))
    if policy.spec.pools:
        print("\n" + table(["POOL", "MATCH", "CONSTRAINTS"], [
            [p.name, p.match.text(), " ".join(",".join(c.model_dump()) for c in p.constraints)]
            for p in policy.spec.pools]))
    return 0


def _in_force(held: tuple[bytes, int, int] | None) -> str:
    """What the controller says it holds (its status of the policy), in one line."""
    from controller.api.policy import PolicyStatus

    if held is None:
        return "unknown (no controller has written the policy's status yet)"
    try:
        status = PolicyStatus.model_validate_json(held[0])
    except ValueError:
        return "unknown (the policy's status does not decode)"
    valid = next((c for c in status.conditions if c.type == "Valid"), None)
    revision = (f"revision {status.revision_in_force}" if status.revision_in_force
                else "no policy (nothing is denied)")
    seen = f"as of revision {status.observed_revision}"
    if valid is not None and valid.status == "False":
        return f"{revision}, {seen}: the stored one was refused: {valid.message}"
    return f"{revision}, {seen}"


def _print_document(raw: bytes, fmt: str) -> None:
    import yaml

    from controller.api.codec import ObjectInvalid, parse_document

    try:
        doc = parse_document(raw)
    except ObjectInvalid:
        sys.stdout.write(raw.decode("utf-8", "replace"))  # as stored: it does not parse
        return
    if fmt == "json":
        print(json.dumps(doc, indent=2, default=str))
    else:
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))


def _limits(limits: ResourceLimits | None) -> str:
    if limits is None:
        return "-"
    given = [f"{n}={getattr(limits, n):g}" for n in ("cpus", "mem", "disk", "gpus")
             if getattr(limits, n) is not None]
    return ",".join(given) or "-"


def _list(values: list[str] | None) -> str:
    if values is None:
        return "any"
    return ",".join(values) or "none"


def _row(name: str, rules: Rules) -> list[str]:
    images = _list(rules.allowed_images) + (" (image required)" if rules.require_image else "")
    networks = None if rules.allowed_networks is None else [
        n.value for n in rules.allowed_networks]
    return [name, rules.role or "-", images, _list(rules.allowed_host_paths), _list(networks),
            _limits(rules.max_task_resources), _limits(rules.max_object_resources)]


def _rules_table(policy: Policy) -> str:
    rows = [_row("(default)", policy.spec.default)]
    rows += [_row(ns, policy.rules_for(ns)) for ns in sorted(policy.spec.namespaces)]
    return table(["NAMESPACE", "ROLE", "IMAGES", "HOST-PATHS", "NETWORKS", "MAX/TASK",
                  "MAX/OBJECT"], rows)


# --- throttles --------------------------------------------------------------------------------
def get_throttles(args: argparse.Namespace) -> int:
    """`docket policy throttles` and `docket get throttles` (args: the store arguments and
    `output`: table (None, wide), name, json or yaml)."""
    return guarded("throttles", lambda: _throttles(args))


def _throttles(args: argparse.Namespace) -> int:
    from controller.api.policy import POLICY_KEY
    from controller.policy import judge

    with open_store(args) as store:
        key = f"{store.keys.prefix}/{POLICY_KEY}"
        found = store.get_raw(key)
        policy, problems = judge(found[0] if found is not None else None)
        if problems:
            print(f"the policy at {key} is invalid; the controller keeps the last valid one "
                  "in force (see `docket policy`):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        if policy is None or not policy.spec.throttles:
            print(f"No throttles found in {key}." if policy is not None
                  else f"No throttles: no policy at {key}.", file=sys.stderr)
            return 0
        running, waiting = throttle_counts(store, policy)
    rows = [{"name": t.name, "match": t.match.text(), "running": running[t.name],
             "limit": t.max_running, "waiting": waiting[t.name]}
            for t in policy.spec.throttles]
    fmt = getattr(args, "output", None)
    if fmt == "name":
        print("\n".join(f"throttle/{r['name']}" for r in rows))
    elif fmt in ("json", "yaml"):
        _print_rows(rows, fmt)
    else:
        print(table(["NAME", "MATCH", "RUNNING", "LIMIT", "WAITING"],
                    [[str(r[c]) for c in ("name", "match", "running", "limit", "waiting")]
                     for r in rows]))
    return 0


def _print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    import yaml

    if fmt == "json":
        print(json.dumps(rows, indent=2))
    else:
        sys.stdout.write(yaml.safe_dump(rows, sort_keys=False))


def throttle_counts(store: Store, policy: Policy) -> tuple[Counter[str], Counter[str]]:
    """(running, waiting) per throttle name, from every execution record in etcd (see the
    module docstring). A record that does not decode, or whose task id is not Docket's, is
    not counted."""
    from controller.api import ExecutionRecord, kind_by_name
    from controller.api.status import LAUNCHING
    from controller.policy import task_labels, throttles_for
    from controller.reconcile.taskid import parse_task_id
    from controller.throttles import holds_room

    items, _ = store.list_raw(store.keys.executions_root())
    counted: list[tuple[tuple[str, str, str], bool]] = []  # (owner, live) of open records
    for _k, value, *_ in items:
        try:
            record = ExecutionRecord.model_validate_json(value)
        except ValueError:
            continue
        parts = parse_task_id(record.task_id)
        if parts is None or not holds_room(record.state):
            continue
        key = parts.owner
        counted.append(((key.kind, key.namespace, key.name), record.state != LAUNCHING))
    labels: dict[tuple[str, str, str], dict[str, str]] = {}
    for kind in sorted({ref[0] for ref, _live in counted}):
        objects, _ = store.list(kind_by_name(kind).plural)
        for stored in objects:
            if stored.valid:
                labels[(kind, stored.namespace, stored.name)] = task_labels(stored.object)
    running: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    for ref, live in counted:
        kind, namespace, name = ref
        for throttle in throttles_for(policy, kind, namespace, name, labels.get(ref, {})):
            (running if live else waiting)[throttle] += 1
    return running, waiting
