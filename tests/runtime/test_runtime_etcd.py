"""The runtime end to end against the real store and a real etcd: informer -> workqueue ->
reconcile loop, reading state from the cache."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Hashable

import pytest

from controller.runtime import Controller, Informer, Result, WorkQueue
from controller.runtime.informer import ObjectKey
from controller.store import Store

pytestmark = pytest.mark.integration


def job_doc(name: str, completions: int) -> bytes:
    return json.dumps({"apiVersion": "docket.dev/v1", "kind": "Job",
                       "metadata": {"name": name},
                       "spec": {"completions": completions,
                                "template": {"command": "echo hi"}}}).encode()


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_informer_and_loop_with_real_store(store: Store) -> None:
    store.put_raw(store.keys.object("jobs", "default", "before"), job_doc("before", 1))
    seen: dict[str, object] = {}
    lock = threading.Lock()
    informer = Informer(store, "jobs", "Job", resync_seconds=3600)

    def reconcile(key: Hashable) -> Result:
        assert isinstance(key, ObjectKey)
        obj = informer.get(key.namespace, key.name)  # level-triggered: state from the cache
        with lock:
            seen[key.name] = None if obj is None else obj.mod_revision
        return Result()

    queue = WorkQueue("Job")
    informer.enqueue_into(queue.add)
    loop = Controller("Job", queue, reconcile, workers=2)
    informer.start()
    loop.start()
    try:
        assert informer.wait_for_sync(10)
        eventually(lambda: "before" in seen)

        rev = store.put_raw(store.keys.object("jobs", "default", "after"), job_doc("after", 2))
        eventually(lambda: seen.get("after") == rev)
        cached = informer.get("default", "after")
        assert cached is not None and cached.valid

        store.put_raw(store.keys.object("jobs", "default", "broken"), b"{not json")
        eventually(lambda: "broken" in seen)
        broken = informer.get("default", "broken")
        assert broken is not None and not broken.valid

        store.delete_raw(store.keys.object("jobs", "default", "before"))
        eventually(lambda: seen.get("before", 0) is None)
        assert informer.get("default", "before") is None
    finally:
        loop.stop()
        informer.stop()
