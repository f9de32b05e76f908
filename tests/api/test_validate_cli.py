"""`docket validate` and `docket crds`, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from controller.api.crd import render_crds

ROOT = Path(__file__).resolve().parents[2]
DOCKET = [sys.executable, "-m", "controller.cli.main"]


def docket(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DOCKET, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.integration
def test_examples_are_valid() -> None:
    out = docket("validate", "-f", "deploy/examples")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 object(s) valid" in out.stdout
    kinds = {yaml.safe_load(p.read_text())["kind"]
             for p in (ROOT / "deploy/examples").iterdir() if p.suffix in (".yaml", ".json")}
    assert kinds == {"Job", "CronJob", "Queue", "Service"}


BROKEN = {
    "wrong-type.yaml": ("apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: wrong-type}\n"
                        "spec: {completions: lots, template: {command: x}}\n"),
    "unknown-field.yaml": ("apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: unknown}\n"
                           "spec: {template: {command: x, resources: {cpu: 1}}}\n"),
    "bad-name.yaml": ("apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: Bad_Name}\n"
                      "spec: {template: {command: x}}\n"),
    "missing.yaml": "apiVersion: docket.dev/v1\nkind: Service\nmetadata: {name: svc}\nspec: {}\n",
    "syntax.yaml": "apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: x\n",
    "version.yaml": ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: old}\n"
                     "spec: {template: {command: x}}\n"),
    "kind.json": ('{"apiVersion": "docket.dev/v1", "kind": "Pod", "metadata": {"name": "p"},'
                  ' "spec": {}}'),
    "cpus.yaml": ("apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: send-email}\n"
                  "spec: {template: {command: x, resources: {cpus: 0}}}\n"),
}

EXPECTED = {
    "wrong-type.yaml": "Job default/wrong-type: spec.completions: must be an integer",
    "unknown-field.yaml": "Job default/unknown: spec.template.resources.cpu: unknown field",
    "bad-name.yaml": "Job default/Bad_Name: metadata.name: must be a DNS-1123 label",
    "missing.yaml": "Service default/svc: spec.template: required field is missing",
    "syntax.yaml": "file: invalid YAML:",
    "version.yaml": "Job default/old: apiVersion: must be docket.dev/v1, not 'batch/v1'",
    "kind.json": "object default/p (document 1): kind: unknown kind 'Pod'",
    "cpus.yaml": "Job default/send-email: spec.template.resources.cpus: must be greater than 0",
}


@pytest.mark.integration
def test_broken_manifests_give_one_precise_line_each(tmp_path: Path) -> None:
    for name, text in BROKEN.items():
        (tmp_path / name).write_text(text)
    out = docket("validate", "-f", str(tmp_path))
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(BROKEN), lines
    for name, expected in EXPECTED.items():
        matching = [line for line in lines if line.startswith(f"{tmp_path / name}: ")]
        assert len(matching) == 1, (name, lines)
        assert expected in matching[0], (expected, matching[0])


@pytest.mark.integration
def test_multi_document_yaml_and_json_lists(tmp_path: Path) -> None:
    job = ("apiVersion: docket.dev/v1\nkind: Job\nmetadata: {name: %s}\n"
           "spec: {template: {command: x}}\n")
    (tmp_path / "many.yaml").write_text(job % "a" + "---\n" + job % "b" + "---\n")
    (tmp_path / "list.json").write_text(
        '[{"apiVersion": "docket.dev/v1", "kind": "Job", "metadata": {"name": "c"},'
        ' "spec": {"template": {"args": ["true"]}}}]')
    out = docket("validate", "-f", str(tmp_path / "many.yaml"), "-f", str(tmp_path / "list.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 object(s) valid" in out.stdout
    (tmp_path / "dup.yaml").write_text(job % "a")
    out = docket("validate", "-f", str(tmp_path))
    assert out.returncode == 1 and "duplicate" in out.stdout


@pytest.mark.integration
def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("")
    out = docket("validate", "-f", str(tmp_path / "nope.yaml"), "-f", str(tmp_path / "empty.yaml"))
    assert out.returncode == 1
    assert "nope.yaml: file: no such file or directory" in out.stdout
    assert "empty.yaml: file: no objects in file" in out.stdout


@pytest.mark.integration
def test_crds_are_up_to_date() -> None:
    for name, text in render_crds().items():
        path = ROOT / "crds" / name
        assert path.exists(), f"{path} missing: run `docket crds`"
        assert path.read_text() == text, f"{path} is out of date: run `docket crds`"
    out = docket("crds", "--check")
    assert out.returncode == 0, out.stderr


@pytest.mark.integration
def test_crds_check_detects_drift(tmp_path: Path) -> None:
    assert docket("crds", "--out", str(tmp_path)).returncode == 0
    (tmp_path / "jobs.docket.dev.yaml").write_text("stale\n")
    out = docket("crds", "--out", str(tmp_path), "--check")
    assert out.returncode == 1 and "jobs.docket.dev.yaml: out of date" in out.stderr


def _walk(node: object, path: str = "") -> list[str]:
    bad = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$defs", "const"):
                bad.append(f"{path}.{key}")
            if key == "anyOf" and any(o == {"type": "null"} for o in value):
                bad.append(f"{path}.anyOf(null)")
            bad.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad.extend(_walk(value, f"{path}[{i}]"))
    return bad


def test_crds_are_structural_openapi() -> None:
    for name, text in render_crds().items():
        crd = yaml.safe_load(text)
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["spec"]["group"] == "docket.dev"
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"
        assert {"apiVersion", "kind", "metadata", "spec", "status"} <= set(schema["properties"])
        assert _walk(schema) == [], name
        # Kubernetes refuses additionalProperties next to properties; closed objects are its
        # default (see tests/api/test_crds.py for the full structural check).
        assert "additionalProperties" not in schema["properties"]["spec"]
