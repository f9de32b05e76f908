"""Unit tests (no servers) of the chaos suite's own checkers: the fuzz generator covers every
mutation class, seeded and bounded, each document invalid and named by the codec; the
deposed-leader verdict fails on doctored histories (a write in the quiet window, a launch of an
old intent, a re-subscription) and passes on a clean one; the fuzz verdicts fail on a stuck,
valid or unnamed status."""

from __future__ import annotations

import collections

from tests.chaos.fuzz import MAX_DOC_BYTES, MUTATIONS, Fuzzer, expected_in, problems_of
from tests.chaos.scenarios.fuzz_specs import verdicts
from tests.chaos.scenarios.leader_kill import Deposed, check_deposed


def test_every_mutation_class_is_generated_invalid_and_named() -> None:
    fuzzer = Fuzzer(7, keys=5, huge_bytes=20_000)
    docs = list(fuzzer.docs(len(MUTATIONS) * 4))
    by_class = collections.Counter(d.mutation for d in docs)
    assert set(by_class) == set(MUTATIONS) and min(by_class.values()) == 4
    assert {d.plural for d in docs} == {"jobs", "cronjobs", "queues", "services"}
    for doc in docs:
        assert len(doc.data) <= MAX_DOC_BYTES
        message = problems_of(doc)
        assert message is not None, f"document {doc.index} ({doc.mutation}) is valid"
        assert expected_in(doc, message), (doc.mutation, doc.path, doc.reason, message)
    assert fuzzer.unnamed == []
    assert any(b"\xff" in d.data or b"\xc3\x28" in d.data or b"\xed" in d.data
               for d in docs if d.mutation == "invalid_utf8")
    assert all(b"&l0" in d.data for d in docs if d.mutation == "yaml_bomb")


def test_the_generator_is_seeded() -> None:
    first = [d.data for d in Fuzzer(3, huge_bytes=20_000).docs(30)]
    again = [d.data for d in Fuzzer(3, huge_bytes=20_000).docs(30)]
    other = [d.data for d in Fuzzer(4, huge_bytes=20_000).docs(30)]
    assert first == again and first != other


def _deposed(**changes: object) -> Deposed:
    d = Deposed("controller-1", thawed_at=100.0, quiet_until=101.0, takeover_revision=50,
                old_intents={"job.default.a.7.0.0"}, stream_before="s2", stream_after="s2")
    for key, value in changes.items():
        setattr(d, key, value)
    return d


def test_the_deposed_verdict_passes_a_clean_history() -> None:
    # Launches of new intents after the window are the new leader's.
    assert check_deposed(_deposed(launches=[(102.0, "job.default.a.7.1.0")])) == []


def test_the_deposed_verdict_fails_on_doctored_histories() -> None:
    wrote = check_deposed(_deposed(changed=[("/p/status/jobs/default/a", 61)],
                                   revision_moved=1))
    assert [(v.invariant, v.id) for v in wrote] == [
        ("deposed-leader-wrote", "/p/status/jobs/default/a at revision 61")]
    deleted = check_deposed(_deposed(revision_moved=2))
    assert [v.invariant for v in deleted] == ["deposed-leader-wrote"]
    in_window = check_deposed(_deposed(launches=[(100.2, "job.default.b.9.0.0")]))
    assert [(v.invariant, v.id) for v in in_window] == [
        ("deposed-leader-launched", "job.default.b.9.0.0")]
    old = check_deposed(_deposed(launches=[(105.0, "job.default.a.7.0.0")]))
    assert [(v.invariant, v.id) for v in old] == [
        ("deposed-leader-launched", "job.default.a.7.0.0")]
    stolen = check_deposed(_deposed(stream_after=""))
    assert [v.invariant for v in stolen] == ["deposed-leader-subscribed"]


def test_the_fuzz_verdicts_fail_on_stuck_valid_or_unnamed_statuses() -> None:
    docs = list(Fuzzer(9, keys=3, huge_bytes=20_000).docs(3))
    field_doc = next(d for d in docs if d.path)
    last = {(d.plural, d.name): (d, 10 + i) for i, d in enumerate(docs)}
    good = {(d.plural, d.name): (10 + i, "Invalid",
                                 f"{d.path}: broken" if d.path else d.reason)
            for i, d in enumerate(docs)}
    assert verdicts(last, good) == []
    key = (field_doc.plural, field_doc.name)
    rev = last[key][1]
    for status, invariant in (((rev - 1, "Invalid", f"{field_doc.path}: x"),
                               "fuzz-status-stuck"),
                              ((rev, "Pending", ""), "fuzz-not-invalid"),
                              ((rev, "Invalid", "spec.other: x"), "fuzz-invalid-unnamed")):
        found = verdicts(last, {**good, key: status})
        assert [v.invariant for v in found] == [invariant]
        assert found[0].object == f"{field_doc.plural}/fuzz/{field_doc.name}"
