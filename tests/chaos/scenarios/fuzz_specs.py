"""Scenario 6 (issue 14): fuzzed specs. Documents generated from the schemas in `crds/` and
broken (tests/chaos/fuzz.py: wrong types, unknown fields, out-of-range, missing, huge and deep
values, invalid UTF-8, YAML bombs, syntax, wrong identity) are written with etcd puts into a
running controller beside the mixed workload: 10,000 at full length, a few hundred in the
suite, over a bounded set of keys (namespace `fuzz`), so later documents update earlier ones.

Checked from etcd, the launch log and /proc, not from the controller's word:
- 0 crashes: the controller process is the one started, still running, and its log holds no
  traceback;
- 0 stuck workers: every fuzz key's status reaches the revision of its last document
  (`observedRevision`) within a bounded time, and the valid workload settles (the common
  invariants);
- each Invalid names the field: the status of a key is phase Invalid with an Invalid
  condition whose message names the mutated field's path (or, for a document that does not
  parse, the reason);
- nothing of a fuzz key launched: no task id of namespace `fuzz` in the master's launch log;
- memory bounded: the controller's RSS (VmRSS) after the fuzz, against before, within
  `RSS_GROWTH_MB`; the peak is reported.
The fuzz objects are deleted at the end (their statuses must go too), so the workload's
settle check sees only its own objects.
"""

from __future__ import annotations

import time
from pathlib import Path

from controller.store import Delete
from tests.chaos.fuzz import MUTATIONS, FuzzDoc, Fuzzer, expected_in
from tests.chaos.invariants import Report, Violation
from tests.chaos.scenarios import Options, Scenario
from tests.chaos.scenarios.base import Run, execute
from tests.chaos.world import World, WorldConfig

NAMESPACE = "fuzz"
SHORT_DOCS, FULL_DOCS = 150, 10_000
SHORT_KEYS, FULL_KEYS = 20, 50  # per kind and mutation class
SHORT_HUGE, FULL_HUGE = 100_000, 400_000  # bytes of the largest huge value
RSS_GROWTH_MB = 300.0
LEASE = 5
STEPPED_DOWN = "not leading any more: stopping the controllers"
STALL_SECONDS = 30.0  # no fuzz status moved for this long: the rest is stuck
MAX_BEHIND = 100  # fuzz keys whose status lags before the writer waits
PLURALS = ("jobs", "cronjobs", "queues", "services")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _status_view(world: World) -> dict[tuple[str, str], tuple[int, str, str]]:
    """(plural, name) -> (observedRevision, phase, Invalid message) of every fuzz key."""
    out = {}
    for plural in PLURALS:
        for (ns, name), found in world.user.list_statuses(plural).items():
            if ns != NAMESPACE:
                continue
            status = found.status
            invalid = next((c.message for c in status.conditions
                            if c.type == "Invalid" and c.status == "True"), "")
            out[(plural, name)] = (status.observed_revision or 0, str(status.phase), invalid)
    return out


def verdicts(last: dict[tuple[str, str], tuple[FuzzDoc, int]],
             statuses: dict[tuple[str, str], tuple[int, str, str]]) -> list[Violation]:
    """Each key's final status against its last document: caught up, Invalid, naming it."""
    out = []
    for (plural, name), (doc, revision) in sorted(last.items()):
        obj = f"{plural}/{NAMESPACE}/{name}"
        what = f"document {doc.index} ({doc.mutation} {doc.path or doc.reason!r})"
        seen = statuses.get((plural, name))
        if seen is None or seen[0] < revision:
            out.append(Violation("fuzz-status-stuck", obj, what,
                                 f"status at revision {seen[0] if seen else 'none'}, the "
                                 f"document at {revision}"))
            continue
        _, phase, message = seen
        if phase != "Invalid":
            out.append(Violation("fuzz-not-invalid", obj, what, f"phase {phase}"))
        elif not expected_in(doc, message):
            out.append(Violation("fuzz-invalid-unnamed", obj, what,
                                 f"the message does not name it: {message[:300]}"))
    return out


def _catch_up(run: Run, last: dict[tuple[str, str], tuple[FuzzDoc, int]], allowed: int,
              stall: float) -> tuple[int, dict[tuple[str, str], tuple[int, str, str]]]:
    """Wait until at most `allowed` fuzz keys have a status behind their last document, or
    until no status moved for `stall` seconds: (keys behind, the statuses)."""
    moved_at, before = time.monotonic(), -1
    while True:
        statuses = _status_view(run.world)
        behind = sum(1 for k, (_, rev) in last.items() if statuses.get(k, (0,))[0] < rev)
        if behind <= allowed or time.monotonic() - moved_at > stall:
            return behind, statuses
        if behind != before:
            moved_at, before = time.monotonic(), behind
        run.pause(0.2)


def faults(run: Run) -> None:
    world = run.world
    store = world.user
    short = run.options.short
    total = SHORT_DOCS if short else FULL_DOCS
    budget = 30.0 if short else (run.options.minutes or 10.0) * 60
    controller = world.controllers[0]
    pid = controller.pid
    assert pid is not None
    run.pause(1.0)  # the workload's objects first: the baseline includes them
    rss_before = rss_mb(pid)
    peak = rss_before
    fuzzer = Fuzzer(run.options.seed, namespace=NAMESPACE,
                    keys=SHORT_KEYS if short else FULL_KEYS,
                    huge_bytes=SHORT_HUGE if short else FULL_HUGE)
    last: dict[tuple[str, str], tuple[FuzzDoc, int]] = {}
    by_mutation = dict.fromkeys(MUTATIONS, 0)
    written = 0
    start = time.monotonic()
    stalls = 0
    for doc in fuzzer.docs(total):
        if time.monotonic() - start > budget:
            break
        revision = store.put_raw(store.keys.object(doc.plural, NAMESPACE, doc.name), doc.data)
        last[(doc.plural, doc.name)] = (doc, revision)
        by_mutation[doc.mutation] += 1
        written += len(doc.data)
        if doc.index % 50 == 49:
            peak = max(peak, rss_mb(pid))
            # Back-pressure, as a user who waits for a status: a flood faster than the
            # controller decodes only measures its backlog (tests/chaos/NOTES-leader-fuzz.md).
            behind, _ = _catch_up(run, last, MAX_BEHIND, STALL_SECONDS)
            stalls += behind > MAX_BEHIND
            if doc.index % 1000 == 999:
                run.log(f"fuzz: {doc.index + 1} documents, RSS {peak:.0f} MB peak")
    put_seconds = time.monotonic() - start

    # Every key's status catches up with its last document, unless nothing moves for
    # STALL_SECONDS (bounded).
    _, statuses = _catch_up(run, last, 0, STALL_SECONDS)
    peak = max(peak, rss_mb(pid))
    converge_seconds = time.monotonic() - start - put_seconds
    run.violations += verdicts(last, statuses)
    rss_after = rss_mb(pid)
    if rss_after - rss_before > RSS_GROWTH_MB:
        run.violations.append(Violation("fuzz-memory", controller.name, f"pid {pid}",
                                        f"RSS grew {rss_after - rss_before:.0f} MB "
                                        f"({rss_before:.0f} -> {rss_after:.0f}), more than "
                                        f"{RSS_GROWTH_MB:g}"))
    run.violations += _crashes(run, pid)
    launched = [tid for _t, _fw, tid, _a in world.lm.launches() if f".{NAMESPACE}." in tid]
    run.violations += [Violation("fuzz-launched", tid.split(".")[2], tid,
                                 "a task of an invalid object") for tid in launched[:20]]

    # Delete them; their statuses must go too (bounded).
    for plural in PLURALS:
        store.commit([Delete(store.keys.kind_prefix(plural) + f"{NAMESPACE}/", prefix=True)])
    moved_at, left = time.monotonic(), -1
    while (now_left := len(_status_view(world))) and time.monotonic() - moved_at < STALL_SECONDS:
        if now_left != left:
            moved_at, left = time.monotonic(), now_left
        run.pause(0.2)
    for (plural, name) in sorted(_status_view(world))[:20]:
        run.violations.append(Violation("fuzz-status-left", f"{plural}/{NAMESPACE}/{name}",
                                        "after delete", "its status outlived the object"))
    run.figures.update({
        "documents": sum(by_mutation.values()), "by_mutation": by_mutation,
        "keys": len(last), "bytes_written": written,
        "put_seconds": round(put_seconds, 1), "converge_seconds": round(converge_seconds, 1),
        "writer_waits": stalls,
        "generator_redraws": fuzzer.redraws, "codec_unnamed": len(fuzzer.unnamed),
        "rss_mb": {"before": round(rss_before), "after": round(rss_after),
                   "peak": round(peak), "bound_growth": RSS_GROWTH_MB},
        "fuzz_launches": len(launched),
        "leadership_lost": _count(controller.log, STEPPED_DOWN)})
    run.violations += [Violation("fuzz-codec-unnamed", "codec", u.split(" ", 1)[0], u)
                       for u in fuzzer.unnamed[:20]]


def _crashes(run: Run, pid: int) -> list[Violation]:
    controller = run.world.controllers[0]
    out = []
    if controller.pid != pid or controller.starts != 1:
        out.append(Violation("fuzz-crash", controller.name, f"pid {pid}",
                             f"now pid {controller.pid}, started {controller.starts} times"))
    lines = controller.log.read_text(errors="replace").splitlines() \
        if controller.log.exists() else []
    # A write refused because the lease was lost meanwhile (NotLeader) is logged with its
    # traceback and is no crash; any other traceback is.
    tracebacks = [ln for ln in lines if "Traceback" in ln and "NotLeader" not in ln]
    if tracebacks:
        out.append(Violation("fuzz-traceback", controller.name,
                             f"{len(tracebacks)} traceback(s)", tracebacks[0][-1500:]))
    return out


def _count(log: Path, event: str) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count(f'"event": "{event}"')


def run(options: Options) -> Report:
    # A 5 s lease: parsing huge documents competes with lease renewal for the interpreter,
    # and a 2 s lease (the World's default) is then lost now and then (a figure here).
    return execute("fuzz_specs", options, faults, config=WorldConfig(lease_seconds=LEASE))


SCENARIO = Scenario("fuzz_specs", "10,000 fuzzed documents from the CRD schemas put into a "
                                  "running controller beside valid objects", run)

