"""Helpers for the deploy tests: what the controller exports, and what a PromQL expression
reads (metric names, labels it groups or matches by). A small lexer, not a PromQL parser: the
expressions in deploy/ are plain enough, and the tests that use it fail loudly on anything
it does not understand (an unknown name)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

# Importing these modules registers every metric the controller defines.
import controller.mesos.metrics
import controller.metrics
import controller.store.metrics

assert controller.metrics and controller.store.metrics and controller.mesos.metrics

# Series that Prometheus or the Blackbox exporter (scrape.yaml's docket-readyz job) make, not
# Docket: the dashboard and rules may read them.
EXTERNAL_SERIES = frozenset({"up", "probe_success"})
# Labels Prometheus attaches (job, instance) or histograms carry (le).
TARGET_LABELS = frozenset({"job", "instance", "le"})
# Labels whose values grow with the workload: no metric, panel or rule may use them. (The
# Queue metrics are labelled by `namespace` and `queue`: queues are few and long-lived, and a
# deleted one's series are removed; no other metric names an object.)
PER_TASK_LABELS = frozenset({
    "task", "task_id", "taskid", "agent", "agent_id", "slave_id", "hostname", "host",
    "executor_id", "framework_id", "object", "job_name", "uid", "key",
})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
})


@dataclass(frozen=True)
class Exported:
    """Series names the controller's registry exposes, and the labels of each."""

    labels: dict[str, frozenset[str]]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.labels)

    def all_labels(self) -> frozenset[str]:
        return frozenset().union(*self.labels.values())


def exported() -> Exported:
    labels: dict[str, set[str]] = {}
    family: Metric
    for family in REGISTRY.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            labels.setdefault(family.name + suffix, set())
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    # A labelled metric has no sample before its first label set (a Queue's, before any Queue
    # is seen): its declared labels count as well.
    for module in (controller.metrics, controller.store.metrics, controller.mesos.metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for described in value.describe():
                    for suffix in _SUFFIXES.get(described.type, ("",)):
                        labels.setdefault(described.name + suffix, set()).update(
                            value._labelnames)
    return Exported({name: frozenset(ls - {"le"}) for name, ls in labels.items()})


@dataclass
class Reads:
    """What one expression reads."""

    metrics: set[str] = field(default_factory=set)
    grouped_by: set[str] = field(default_factory=set)   # by/without/on/ignoring/group_*
    matched_on: set[str] = field(default_factory=set)   # label matchers inside {...}


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def reads(expr: str) -> Reads:
    out = Reads()
    text = _STRING.sub('""', expr)
    for m in _MATCHERS.finditer(text):
        out.matched_on.update(_MATCHER_LABEL.findall(m.group(1)))
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for m in _GROUPING.finditer(text):
        out.grouped_by.update(x.strip() for x in m.group(1).split(",") if x.strip())
    text = _GROUPING.sub(" ", text)
    text = text.replace('""', " ")
    for m in _IDENT.finditer(text):
        name = m.group(0)
        rest = text[m.end():].lstrip()
        before = text[:m.start()]
        if rest.startswith("("):
            continue  # a function or aggregation
        if name.lower() in _KEYWORDS or (before and (before[-1].isdigit() or before[-1] == ".")):
            continue  # a keyword, or the exponent/unit tail of a number
        out.metrics.add(name)
    return out


def legend_labels(legend: str) -> set[str]:
    """Labels a Grafana legend format such as "{{kind}} {{result}}" refers to."""
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend))
