"""The conformance suite of the store's etcd seam: one set of behaviours, run against a real
etcd (test_conformance_real.py) and the in-memory twin (`controller.store.MemoryEtcd`,
test_conformance_memory.py), so the twin cannot drift from what etcd does.

The pattern is trio's testing/_check_streams.py: the suite is written once against an abstract
`Backend` (a fresh etcd for each test, plus the few things the suite cannot do through the store:
let time pass, restart etcd), and each implementation runs it by subclassing `StoreConformance`
with a `backend` fixture. Every test goes through the real `Store` (and `WatchStream`, the group
committer and `LeaderElector`), because that is the code the twin exists to carry; a few go
below it, to `store.client.raw` or the store's own request senders, where etcd's rule is the
point and the store would hide a breach (compaction, request limits, raw watch delivery).

Synchronisation is on outcomes: a watch is read with a timeout, an eventual state is polled
until `backend.patience` runs out, "nothing else was delivered" is shown by a marker write
arriving next. `pass_time` is the one exception, and only because a lease's TTL is the thing
under test: the twin's clock jumps, a real etcd needs that much real time.

The tests live in `keys`, `watches` and `leases`; `backend` holds the `Backend` each
implementation provides and the helpers the tests share.
"""

from __future__ import annotations

from tests.store.conformance.backend import Backend, job_doc, job_key
from tests.store.conformance.keys import KeysConformance
from tests.store.conformance.leases import LeaseConformance
from tests.store.conformance.watches import WatchConformance

__all__ = ["Backend", "StoreConformance", "job_doc", "job_key"]


class StoreConformance(KeysConformance, WatchConformance, LeaseConformance):
    """The suite. Subclass it with a `backend` fixture yielding a `Backend` to run it."""
