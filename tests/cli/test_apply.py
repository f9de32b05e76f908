"""`docket apply` (compare-and-swap writes, apply sets, `--prune`, `--diff`, `--dry-run`) and
`docket diff` against a real etcd, the commands run in-process as the user runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.api import Job
from controller.cli import _applyset
from controller.cli.main import main
from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port

pytestmark = pytest.mark.integration

ANNOTATION = "docket.dev/apply-set"


def job_doc(name: str, command: str = "echo hi", namespace: str = "default",
            annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": meta,
            "spec": {"template": {"command": command,
                                  "resources": {"cpus": 0.1, "mem": 32}}}}


def write_manifest(path: Path, *docs: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


class Cli:
    def __init__(self, store: Store, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.capsys = store, endpoint, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--etcd", self.endpoint, "--prefix", self.store.keys.prefix])
        out, err = self.capsys.readouterr()
        return code, out, err

    def snapshot(self) -> dict[str, int]:
        """Every key under the test's prefix with its mod_revision."""
        items, _ = self.store.list_raw(self.store.keys.prefix + "/")
        return {key: mod for key, _v, mod, _c, _ver in items}

    def put(self, doc: dict[str, Any], *, as_yaml: bool = False) -> None:
        meta = doc["metadata"]
        key = self.store.keys.object("jobs", meta["namespace"], meta["name"])
        text = yaml.safe_dump(doc) if as_yaml else json.dumps(doc)
        self.store.put_raw(key, text.encode())

    def command(self, name: str) -> str:
        stored = self.store.get("jobs", "default", name)
        assert stored is not None and isinstance(stored.object, Job)
        return stored.object.spec.template.command or ""

    def annotation(self, name: str, namespace: str = "default") -> str | None:
        stored = self.store.get("jobs", namespace, name)
        assert stored is not None and stored.valid, f"job {namespace}/{name} missing"
        return stored.object.metadata.annotations.get(ANNOTATION)  # type: ignore[union-attr]


@pytest.fixture
def cli(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(store, etcd_server.endpoint, capsys)


def test_apply_records_the_set_and_a_second_apply_writes_nothing(cli: Cli,
                                                                tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    write_manifest(manifests / "a.yaml", job_doc("a"))
    write_manifest(manifests / "b.yaml", job_doc("b"))

    code, out, err = cli("apply", "-f", str(manifests) + "/")
    assert code == 0, err
    assert "job default/a created" in out and "job default/b created" in out
    # the default set name is the path as given, normalised
    assert cli.annotation("a") == str(manifests) and cli.annotation("b") == str(manifests)
    assert f"apply set {str(manifests)!r}: 2 created, 0 configured, 0 unchanged" in out

    before = cli.snapshot()
    code, out, _ = cli("apply", "-f", str(manifests))
    assert code == 0 and "job default/a unchanged" in out and "job default/b unchanged" in out
    assert cli.snapshot() == before
    code, out, _ = cli("diff", "-f", str(manifests))
    assert (code, out) == (0, "")


def test_diff_exit_codes_and_decoded_comparison(cli: Cli, tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    write_manifest(manifests / "a.yaml", job_doc("a"))
    # stored as YAML by hand, carrying this set's annotation: the JSON file below equals it
    cli.put(job_doc("a", annotations={ANNOTATION: "prod"}), as_yaml=True)
    (manifests / "a.yaml").unlink()
    (manifests / "a.json").write_text(json.dumps(job_doc("a")))

    code, out, err = cli("diff", "-f", str(manifests), "--apply-set", "prod")
    assert (code, out) == (0, ""), err

    (manifests / "a.json").write_text(json.dumps(job_doc("a", command="echo changed")))
    write_manifest(manifests / "new.yaml", job_doc("new"))
    code, out, err = cli("diff", "-f", str(manifests), "--apply-set", "prod")
    assert code == 1, err
    assert "-    command: echo hi\n+    command: echo changed\n" in out
    assert "(absent)" in out and "+  name: new\n" in out
    assert ANNOTATION not in out  # the annotation is not diff noise

    # only the membership differs: one note, still a difference apply would write
    (manifests / "a.json").write_text(json.dumps(job_doc("a")))
    (manifests / "new.yaml").unlink()
    code, out, _ = cli("diff", "-f", str(manifests), "--apply-set", "staging")
    assert code == 1
    assert out == "# job default/a: moves into apply set 'staging' from 'prod'\n"

    # errors are > 1: an invalid manifest, an unreachable etcd
    (manifests / "bad.yaml").write_text("apiVersion: docket.dev/v1\nkind: Job\n"
                                        "metadata: {name: bad}\nspec: {completionz: 1}\n")
    code, out, err = cli("diff", "-f", str(manifests))
    assert code == 2 and "spec.completionz" in out and "nothing compared" in err
    (manifests / "bad.yaml").unlink()
    code = main(["diff", "-f", str(manifests), "--etcd", f"127.0.0.1:{free_port()}"])
    assert code == 2


def _after_plan(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> None:
    """Run `meanwhile` between apply's read (the plan) and its writes: a concurrent change."""
    real = _applyset.plan

    def plan_then_change(*args: Any, **kwargs: Any) -> _applyset.Plan:
        result = real(*args, **kwargs)
        meanwhile()
        return result

    monkeypatch.setattr(_applyset, "plan", plan_then_change)


def test_a_concurrent_change_is_an_error_never_overwritten(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = tmp_path / "m"
    write_manifest(manifests / "a.yaml", job_doc("a", command="echo from-git"))
    write_manifest(manifests / "b.yaml", job_doc("b"))
    cli.put(job_doc("a", command="echo old"))

    # an update: someone edits a between the read and the write
    _after_plan(monkeypatch, lambda: cli.put(job_doc("a", command="echo edited-meanwhile")))
    code, out, err = cli("apply", "-f", str(manifests))
    assert code == 1
    assert "docket apply: job default/a changed or was deleted in etcd since it was read" in err
    assert "not overwritten" in err
    assert "edited-meanwhile" in cli.command("a")
    assert "job default/b created" in out  # the other object was written
    assert "1 failed" in out

    # a create: someone creates c between the read (absent) and the write
    write_manifest(manifests / "c.yaml", job_doc("c", command="echo from-git"))
    _after_plan(monkeypatch, lambda: cli.put(job_doc("c", command="echo theirs")))
    code, _, err = cli("apply", "-f", str(manifests))
    assert code == 1 and "job default/c was created by someone else" in err
    assert "theirs" in cli.command("c")


def test_prune_deletes_only_the_sets_objects_no_longer_in_the_files(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = tmp_path / "m"
    write_manifest(manifests / "keep.yaml", job_doc("keep"))
    write_manifest(manifests / "gone.yaml", job_doc("gone"), job_doc("gone-too",
                                                                     namespace="team-a"))
    code, _, err = cli("apply", "-f", str(manifests), "--apply-set", "prod")
    assert code == 0, err
    # objects of the same kind outside the set: no annotation, another set's, a near miss
    cli.put(job_doc("by-hand"))
    cli.put(job_doc("other", annotations={ANNOTATION: "staging"}))
    cli.put(job_doc("near", annotations={ANNOTATION: "prod-2"}))

    (manifests / "gone.yaml").unlink()
    code, out, _ = cli("diff", "-f", str(manifests), "--apply-set", "prod", "--prune")
    assert code == 1 and "(pruned: in apply set, not in the files)" in out
    assert "-  name: gone\n" in out and "by-hand" not in out

    code, out, err = cli("apply", "-f", str(manifests), "--apply-set", "prod", "--prune")
    assert code == 0, err
    assert "job default/gone pruned" in out and "job team-a/gone-too pruned" in out
    assert "job default/keep unchanged" in out
    assert cli.store.get("jobs", "default", "gone") is None
    assert cli.store.get("jobs", "team-a", "gone-too") is None
    for name in ("keep", "by-hand", "other", "near"):
        assert cli.store.get("jobs", "default", name) is not None, name
    code, out, _ = cli("diff", "-f", str(manifests), "--apply-set", "prod", "--prune")
    assert (code, out) == (0, "")

    # without --apply-set the set is named after the path: prod's objects are not its own
    code, out, _ = cli("apply", "-f", str(manifests / "keep.yaml"), "--prune")
    assert code == 0 and "pruned" not in out.replace("0 pruned", "")
    assert "moves into apply set" in out  # keep changed set, visibly
    assert cli.store.get("jobs", "default", "other") is not None

    # a prune whose object changes meanwhile is not deleted
    write_manifest(manifests / "x.yaml", job_doc("x"))
    assert cli("apply", "-f", str(manifests), "--apply-set", "prod")[0] == 0
    (manifests / "x.yaml").unlink()
    _after_plan(monkeypatch, lambda: cli.put(job_doc("x", command="echo edited",
                                                     annotations={ANNOTATION: "prod"})))
    code, out, err = cli("apply", "-f", str(manifests), "--apply-set", "prod", "--prune")
    assert code == 1 and "job default/x changed or was deleted" in err and "not deleted" in err
    assert cli.store.get("jobs", "default", "x") is not None


def test_dry_run_writes_nothing_and_diff_shows_each_change(cli: Cli, tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    write_manifest(manifests / "a.yaml", job_doc("a"))
    write_manifest(manifests / "b.yaml", job_doc("b"))
    assert cli("apply", "-f", str(manifests), "--apply-set", "s")[0] == 0
    write_manifest(manifests / "a.yaml", job_doc("a", command="echo new"))
    (manifests / "b.yaml").unlink()
    write_manifest(manifests / "c.yaml", job_doc("c"))

    before = cli.snapshot()
    code, out, err = cli("apply", "-f", str(manifests), "--apply-set", "s", "--prune",
                         "--dry-run", "--diff")
    assert code == 0, err
    assert cli.snapshot() == before  # no key written, created or deleted
    assert "job default/a configured (dry run)" in out
    assert "job default/c created (dry run)" in out
    assert "job default/b pruned (dry run)" in out
    assert "+    command: echo new" in out and "nothing written" in out
    # --diff prints each change before its line
    assert out.index("+    command: echo new") < out.index("job default/a configured")

    code, out, err = cli("apply", "-f", str(manifests), "--apply-set", "s", "--prune", "--diff")
    assert code == 0, err
    assert "job default/a configured" in out and "(dry run)" not in out
    assert cli.store.get("jobs", "default", "b") is None
    assert cli("diff", "-f", str(manifests), "--apply-set", "s", "--prune")[0] == 0
