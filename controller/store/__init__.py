"""The store: the only code that talks to etcd.

Typed get/list/watch of every kind under a configurable prefix, compare-and-swap writes on
mod_revision, status and execution records under their own keys, leases, a launcher for a
real etcd server (`etcd_server`) and an in-memory twin of etcd for tests (`memory`). Documents
that fail to decode are handed out as `InvalidObject`s, never dropped and never raised.
"""

from controller.store.client import (
    Compacted,
    Conflict,
    EtcdClient,
    EtcdSecurity,
    EtcdUnavailable,
    StoreError,
)
from controller.store.etcd_server import EtcdServer, EtcdServerError
from controller.store.keys import Keys
from controller.store.memory import MemoryEtcd, MemoryEtcdClient
from controller.store.store import (
    Delete,
    Expect,
    Put,
    Store,
    StoredExecution,
    StoredObject,
    StoredStatus,
)
from controller.store.watch import WatchEvent, WatchStream

__all__ = [
    "Compacted",
    "Conflict",
    "Delete",
    "EtcdClient",
    "EtcdSecurity",
    "EtcdServer",
    "EtcdServerError",
    "EtcdUnavailable",
    "Expect",
    "Keys",
    "MemoryEtcd",
    "MemoryEtcdClient",
    "Put",
    "Store",
    "StoreError",
    "StoredExecution",
    "StoredObject",
    "StoredStatus",
    "WatchEvent",
    "WatchStream",
]
