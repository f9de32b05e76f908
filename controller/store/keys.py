"""The etcd key layout (docs/architecture.md §3), in one place.

    <prefix>/<plural>/<namespace>/<name>              desired objects (users, GitOps)
    <prefix>/status/<plural>/<namespace>/<name>       status (controller only)
    <prefix>/executions/<plural>/<namespace>/<name>/<taskId>
                                                      one record per task attempt; the kind is
                                                      part of the key, as two kinds may share
                                                      a name
    <prefix>/queue-items/<namespace>/<queue>/<item>   messages of etcd-backed Queues (producers)
    <prefix>/queue-claims/<namespace>/<queue>/<item>  which batch holds a message (controller)
    <prefix>/queue-dead/<namespace>/<queue>/<item>    default dead letter of etcd-backed Queues
    <prefix>/secrets/<namespace>/<name>               Secrets (operators, `docket create
                                                      secret`); read by the controller only
                                                      into memory, never copied to any key
    <prefix>/controller/...                           leader lease, Mesos FrameworkID
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "/docket"

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"key prefix {self.prefix!r} must start with '/' and not end with '/'")

    def kind_prefix(self, plural: str) -> str:
        return f"{self.prefix}/{plural}/"

    def object(self, plural: str, namespace: str, name: str) -> str:
        return f"{self.prefix}/{plural}/{namespace}/{name}"

    def status_prefix(self, plural: str) -> str:
        return f"{self.prefix}/status/{plural}/"

    def status(self, plural: str, namespace: str, name: str) -> str:
        return f"{self.prefix}/status/{plural}/{namespace}/{name}"

    def executions_root(self) -> str:
        """Every execution record of every kind (and, before layout 2, of no kind)."""
        return f"{self.prefix}/executions/"

    def executions_kind_prefix(self, plural: str) -> str:
        return f"{self.prefix}/executions/{plural}/"

    def executions_prefix(self, plural: str, namespace: str, name: str) -> str:
        return f"{self.prefix}/executions/{plural}/{namespace}/{name}/"

    def execution(self, plural: str, namespace: str, name: str, task_id: str) -> str:
        return f"{self.prefix}/executions/{plural}/{namespace}/{name}/{task_id}"

    def legacy_execution(self, namespace: str, name: str, task_id: str) -> str:
        """Layout 1 (before the kind was part of the key); read only by the migration."""
        return f"{self.prefix}/executions/{namespace}/{name}/{task_id}"

    def queue_items_prefix(self, namespace: str, queue: str) -> str:
        return f"{self.prefix}/queue-items/{namespace}/{queue}/"

    def queue_item(self, namespace: str, queue: str, item: str) -> str:
        return f"{self.prefix}/queue-items/{namespace}/{queue}/{item}"

    def queue_root(self) -> str:
        """Every queue item, claim and dead letter under the default prefixes."""
        return f"{self.prefix}/queue-"

    def queue_items_root(self) -> str:
        return f"{self.prefix}/queue-items/"

    def queue_claims_root(self) -> str:
        return f"{self.prefix}/queue-claims/"

    def queue_claims_prefix(self, namespace: str, queue: str) -> str:
        return f"{self.prefix}/queue-claims/{namespace}/{queue}/"

    def queue_claim(self, namespace: str, queue: str, item: str) -> str:
        return f"{self.prefix}/queue-claims/{namespace}/{queue}/{item}"

    def queue_dead_namespace(self, namespace: str) -> str:
        """Where a namespace's etcd dead letters may go: a Queue's own `deadLetter.key` must
        be under it, so no object can make the controller write another's keys."""
        return f"{self.prefix}/queue-dead/{namespace}/"

    def queue_dead_prefix(self, namespace: str, queue: str) -> str:
        return f"{self.prefix}/queue-dead/{namespace}/{queue}/"

    def secrets_root(self) -> str:
        """Every Secret of every namespace."""
        return f"{self.prefix}/secrets/"

    def secrets_prefix(self, namespace: str) -> str:
        return f"{self.prefix}/secrets/{namespace}/"

    def secret(self, namespace: str, name: str) -> str:
        return f"{self.prefix}/secrets/{namespace}/{name}"

    def split_secret(self, key: str) -> tuple[str, str] | None:
        """(namespace, name) of a Secret's key, or None for a key of another shape."""
        return self.split_object("secrets", key)

    def controller(self, name: str) -> str:
        return f"{self.prefix}/controller/{name}"

    def split_object(self, plural: str, key: str) -> tuple[str, str] | None:
        """(namespace, name) of an object key under `plural`, or None if it has another shape
        (e.g. a stray key with too many segments)."""
        head = self.kind_prefix(plural)
        if not key.startswith(head):
            return None
        parts = key[len(head):].split("/")
        if len(parts) != 2 or not all(parts):
            return None
        return parts[0], parts[1]
