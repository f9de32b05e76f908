"""`docket policy`: the admission policy an operator stored at `<prefix>/policy` — whether it
is valid and why not, and the rules each namespace gets (docs/architecture.md §10).

    docket policy                  the stored policy's verdict and every namespace's rules
    docket policy -o yaml|json     the stored document itself
    docket policy validate FILE    the controller's verdict on a policy file, offline

The verdict is the controller's own (controller/policy.py `judge`): while the stored document
is invalid, the controller keeps the last valid one in force (`docket_policy_valid` is 0), or
denies nothing if none was valid since it started; this command says which problems to fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli._output import add_store_arguments, guarded, open_store, table

if TYPE_CHECKING:
    from controller.api.policy import Policy, ResourceLimits, Rules

NAME = "policy"
HELP = ("Show the admission policy (<prefix>/policy): whether it is valid and why not, and "
        "each namespace's rules; or validate a policy file.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("show", "validate"), default="show",
                        help="show (default) the stored policy, or validate FILE.")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="validate: the policy file (YAML or JSON; - for stdin).")
    parser.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table",
                        help="show: the verdict and rules (table), or the stored document.")
    add_store_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.action == "validate":
        return _validate(args.file)
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
    print(f"{path}: valid policy ({len(policy.spec.namespaces)} namespace(s))")
    return 0


def _show(args: argparse.Namespace) -> int:
    from controller.api.policy import POLICY_KEY
    from controller.policy import judge

    with open_store(args) as store:
        key = f"{store.keys.prefix}/{POLICY_KEY}"
        found = store.get_raw(key)
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
    return 0


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
