"""How `docket suspend|resume` rewrites a stored document, without a server: on the in-memory
etcd (the real `Store` over `MemoryEtcd`), every layout a user may have written keeps its
format and every other field, and a write that races with another is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.api import kind_by_plural, parse_document
from controller.cli._output import CommandError, until
from controller.cli._suspend import encode_like, set_suspend
from controller.store import MemoryEtcd, Store

CRONJOB: dict[str, Any] = {"apiVersion": "docket.dev/v1", "kind": "CronJob",
           "spec": {"schedule": "*/15 * * * *", "timeZone": "America/New_York",
                    "jobTemplate": {"spec": {"suspend": False,
                                             "template": {"command": "echo hi"}}}}}


def suspended(doc: dict[str, Any], value: bool = True) -> dict[str, Any]:
    return {**doc, "spec": {**doc["spec"], "suspend": value}}


@pytest.mark.parametrize("original", [
    json.dumps(CRONJOB),
    json.dumps(CRONJOB) + "\n",
    json.dumps(CRONJOB, indent=2) + "\n",
    json.dumps(CRONJOB, indent=4),
])
def test_json_stays_json_in_its_layout(original: str) -> None:
    value, fmt = encode_like(original.encode(), suspended(CRONJOB))
    assert fmt == "json"
    indent = None if "\n " not in original else len(original.split("\n")[1]) - len(
        original.split("\n")[1].lstrip())
    assert value.decode() == json.dumps(suspended(CRONJOB), indent=indent) + (
        "\n" if original.endswith("\n") else "")


YAML = """\
# nightly, New York time
apiVersion: docket.dev/v1
kind: CronJob

spec:   # what to run
  # every quarter hour
  schedule: '*/15 * * * *'
  timeZone: America/New_York
  jobTemplate:
    spec:
      suspend: false
      template:
        command: echo hi
"""


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_yaml_block_spec_gets_one_line_and_keeps_comments(newline: str) -> None:
    original = YAML.replace("\n", newline)
    value, fmt = encode_like(original.encode(), suspended(CRONJOB))
    assert fmt == "yaml"
    assert value.decode() == original.replace(
        "spec:   # what to run" + newline, "spec:   # what to run" + newline
        + "  suspend: true" + newline)
    # A second edit replaces that line (and never the Job template's own `suspend`).
    again, _ = encode_like(value, suspended(CRONJOB, False))
    assert again.decode() == original.replace(
        "spec:   # what to run" + newline, "spec:   # what to run" + newline
        + "  suspend: false" + newline)
    assert parse_document(again) == suspended(CRONJOB, False)


def test_yaml_flow_spec_is_written_in_block_style() -> None:
    original = ("apiVersion: docket.dev/v1\nkind: CronJob\nspec: {schedule: '*/15 * * * *', "
                "timeZone: America/New_York, jobTemplate: {spec: {suspend: false, template: "
                "{command: echo hi}}}}\n")
    value, fmt = encode_like(original.encode(), suspended(CRONJOB))
    assert fmt == "yaml"
    assert parse_document(value) == suspended(CRONJOB)
    assert list(yaml.safe_load(value)) == ["apiVersion", "kind", "spec"]  # keys in order


def test_yaml_that_does_not_read_back_the_same_becomes_json(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate text must read back as exactly the edited mapping; when no YAML one
    does, the document is written as JSON (YAML timestamps as RFC 3339)."""
    import controller.cli._suspend as edit

    original = "apiVersion: docket.dev/v1\nkind: Job\nspec:\n  startAt: 2026-03-29T01:00:00Z\n"
    doc = {"apiVersion": "docket.dev/v1", "kind": "Job",
           "spec": {"startAt": datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "suspend": True}}
    value, fmt = encode_like(original.encode(), doc)
    assert fmt == "yaml" and parse_document(value) == doc

    monkeypatch.setattr(edit, "_edit_yaml_line", lambda text, suspend: "spec: {}\n")
    monkeypatch.setattr(yaml, "safe_dump", lambda *a, **k: "spec: [not, it]\n")
    value, fmt = encode_like(original.encode(), doc)
    assert fmt == "json"
    assert json.loads(value) == {"apiVersion": "docket.dev/v1", "kind": "Job",
                                 "spec": {"startAt": "2026-03-29T01:00:00+00:00",
                                          "suspend": True}}


@pytest.fixture
def memory_store() -> Iterator[Store]:
    s = MemoryEtcd().store(prefix="/docket")
    yield s
    s.close()


def test_set_suspend_then_resume(memory_store: Store) -> None:
    store = memory_store
    kind = kind_by_plural("cronjobs")
    key = store.keys.object("cronjobs", "default", "tick")
    store.put_raw(key, YAML.encode())
    line = set_suspend(store, kind, "default", "tick", True)
    assert line.startswith("cronjob default/tick suspended (spec.suspend: true, yaml document")
    assert parse_document(store.get_raw(key)[0]) == suspended(CRONJOB)  # type: ignore[index]
    revision = store.get_raw(key)[1]  # type: ignore[index]
    assert "already suspended" in set_suspend(store, kind, "default", "tick", True)
    assert store.get_raw(key)[1] == revision  # type: ignore[index]
    assert "resumed" in set_suspend(store, kind, "default", "tick", False)
    assert parse_document(store.get_raw(key)[0]) == suspended(CRONJOB, False)  # type: ignore[index]


@pytest.mark.parametrize("concurrent", ["edit", "delete", "recreate"])
def test_set_suspend_refuses_to_overwrite_a_concurrent_change(
        memory_store: Store, monkeypatch: pytest.MonkeyPatch, concurrent: str) -> None:
    store = memory_store
    kind = kind_by_plural("cronjobs")
    key = store.keys.object("cronjobs", "default", "tick")
    store.put_raw(key, json.dumps(CRONJOB).encode())
    theirs = json.dumps({**CRONJOB, "spec": {**CRONJOB["spec"], "schedule": "@daily"}})
    real = store.get_raw

    def racing(k: str) -> Any:
        found = real(k)
        if concurrent in ("edit", "recreate"):
            if concurrent == "recreate":
                store.delete_raw(k)
            store.put_raw(k, theirs.encode())
        else:
            store.delete_raw(k)
        return found

    monkeypatch.setattr(store, "get_raw", racing)
    with pytest.raises(CommandError, match=r"cronjob default/tick changed while it was being "
                                           r"suspended.*nothing was written"):
        set_suspend(store, kind, "default", "tick", True)
    monkeypatch.undo()
    after = store.get_raw(key)
    if concurrent == "delete":
        assert after is None
    else:
        assert after is not None and after[0] == theirs.encode()


def test_until_is_relative_both_ways() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert until(now + timedelta(seconds=42), now) == "in 42s"
    assert until(now + timedelta(minutes=5), now) == "in 5m"
    assert until(now + timedelta(hours=26), now) == "in 1d2h"
    assert until(now - timedelta(seconds=90), now) == "90s overdue"
    assert until(None, now) == "-"
