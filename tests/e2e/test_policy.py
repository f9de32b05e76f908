"""The admission policy end to end (issue 15): a real etcd, the embedded Mesos and the whole
controller. Denied objects become Invalid with PolicyDenied naming the field and the rule
while valid objects beside them run, each namespace's tasks run under its Mesos role (as the
master shows them), and a policy tightened under running work kills nothing, launches nothing
new and says so, until it is relaxed again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controller.localmesos import LocalMesos
from controller.store import Store
from tests.e2e.harness import Docket, template, wait_for

pytestmark = pytest.mark.integration

POLICY = """\
apiVersion: docket.dev/v1
kind: Policy
spec:
  default:
    maxTaskResources: {cpus: 1, mem: 1024}
  namespaces:
    team-a:
      role: team-a
      allowedImages: ["registry.example.com/team-a/*"]
      maxObjectResources: {cpus: 0.3}
"""

TIGHT = POLICY.replace("maxObjectResources: {cpus: 0.3}", "maxObjectResources: {cpus: 0.05}")


def _condition(status, type_="Invalid"):  # type: ignore[no-untyped-def]
    return next((c for c in status.conditions if c.type == type_), None)


def test_policy_denies_precisely_runs_the_rest_under_roles_and_never_kills(
        store: Store, local_mesos: Callable[..., LocalMesos], tmp_path: Path) -> None:
    lm = local_mesos()
    policy_key = f"{store.keys.prefix}/policy"
    store.put_raw(policy_key, POLICY.encode())
    d = Docket(store, lm).start()
    try:
        # Denied, each by one rule, named by field.
        d.put_job("wide", {"parallelism": 5, "completions": 5, "template": template("true")},
                  namespace="team-a")
        d.put_job("evil", {"template": {**template("true"), "container": {
            "type": "DOCKER", "image": "evil/x:1"}}}, namespace="team-a")
        d.put_job("big", {"template": template("true", resources={"cpus": 2, "mem": 16})})
        # Admitted beside them.
        d.put_job("ok", {"completions": 2, "template": template("true")}, namespace="team-a")
        d.put_job("plain", {"template": template("true")})

        expected = {
            ("team-a", "wide"): "spec.parallelism",
            ("team-a", "evil"): "spec.template.container.image",
            ("default", "big"): "spec.template.resources.cpus",
        }
        for (namespace, name), field in expected.items():
            status = d.wait_phase(name, "Invalid", namespace=namespace)
            cond = _condition(status)
            assert cond is not None and cond.reason == "PolicyDenied", status
            assert cond.message.startswith(f"{field}:"), cond.message
        assert "evil/x:1" in _condition(d.status("evil", "team-a")).message
        d.wait_phase("ok", "Succeeded", namespace="team-a")
        d.wait_phase("plain", "Succeeded")
        launched = {t.task_id.split(".")[2] for t in lm.tasks()}
        assert launched == {"ok", "plain"}, launched  # nothing denied ever reached Mesos

        # Each namespace's tasks ran under its role, as the master reports them.
        roles = {t.task_id.split(".")[2]: t.role for t in lm.tasks()}
        assert roles["ok"] == "team-a" and roles["plain"] != "team-a", roles

        # A policy tightened under running work: nothing killed, nothing new launched.
        gate = tmp_path / "go"
        d.put_job("long", {"completions": 3, "parallelism": 1, "template": template(
            f"while [ ! -f {gate} ]; do sleep 0.05; done")}, namespace="team-a")
        first = wait_for(lambda: [t.task_id for t in lm.tasks() if ".long." in t.task_id
                                  and t.state == "TASK_RUNNING"], 30, lambda: "never ran")
        store.put_raw(policy_key, TIGHT.encode())
        status = wait_for(lambda: (s := d.status("long", "team-a")) and _condition(s)
                          and _condition(s).status == "True" and s, 30,
                          lambda: f"{d.status('long', 'team-a')}")
        assert status.phase == "Running"
        assert "running tasks go on" in _condition(status).message
        gate.touch()  # the running task ends by itself: it was not killed
        status = d.wait_phase("long", "Invalid", namespace="team-a")
        assert status.succeeded == 1
        assert [(t.task_id, t.state) for t in lm.tasks() if ".long." in t.task_id] == [
            (first[0], "TASK_FINISHED")]
        # Relaxed: the Job carries on from where it was.
        store.put_raw(policy_key, POLICY.encode())
        status = d.wait_phase("long", "Succeeded", namespace="team-a")
        assert status.succeeded == 3
        assert len([t for t in lm.tasks() if ".long." in t.task_id]) == 3
    finally:
        d.stop()
