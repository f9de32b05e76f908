"""Metrics of the etcd client: latency and errors by operation (no per-key labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ETCD_REQUEST_SECONDS = Histogram(
    "docket_etcd_request_duration_seconds",
    "Latency of etcd requests made by Docket.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ETCD_REQUEST_ERRORS = Counter(
    "docket_etcd_request_errors_total",
    "etcd requests that failed, by operation (retried transient failures included).",
    ["operation"],
)
ETCD_COMMIT_BATCH = Histogram(
    "docket_etcd_commit_batch_size",
    "Transactions carried by one etcd request (group commit of concurrent writers).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
ETCD_WATCH_RESTARTS = Counter(
    "docket_etcd_watch_restarts_total",
    "Watches re-established after a broken stream, or re-listed after a compaction.",
    ["reason"],
)

OPERATIONS = ("get", "list", "put", "delete", "txn", "lease", "watch")
for _op in OPERATIONS:
    ETCD_REQUEST_SECONDS.labels(_op)
    ETCD_REQUEST_ERRORS.labels(_op)
for _reason in ("disconnected", "compacted"):
    ETCD_WATCH_RESTARTS.labels(_reason)
