"""`docket validate` on anything at all: random bytes, binary files, absurd nesting, special
files. It must always answer with one line per problem and exit 1, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api.manifests import load_manifests

ROOT = Path(__file__).resolve().parents[2]


def docket(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli.main", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


YAMLISH = st.lists(st.sampled_from(
    ["apiVersion: docket.dev/v1\n", "kind: Job\n", "metadata: {name: x}\n", "spec:\n",
     "  template: {command: x}\n", "  completions: 3\n", "---\n", "- a\n", "{", "}", "[", "]",
     ": ", "&a ", "*a ", "<<: ", "!!python/object:os.system ", "\t", '"', "\x00", "\ufeff",
     "null\n", "~\n", "1e400\n", ".nan\n"]), max_size=30).map("".join)


@settings(max_examples=150, deadline=None)
@given(content=st.one_of(st.binary(max_size=200), YAMLISH.map(str.encode)),
       suffix=st.sampled_from([".yaml", ".json"]))
def test_any_bytes_give_findings_never_an_exception(content: bytes,
                                                     suffix: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        path.write_bytes(content)
        objects, findings = load_manifests([str(path)])
    for finding in findings:
        assert "\n" not in str(finding)
        assert str(finding).startswith(f"{path}: ")
    assert objects or findings


@pytest.mark.integration
def test_the_command_survives_hostile_files(tmp_path: Path) -> None:
    (tmp_path / "random.yaml").write_bytes(os.urandom(4096))
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    (tmp_path / "deep.json").write_text("[" * 50000 + "]" * 50000)
    (tmp_path / "python.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    (tmp_path / "dir.yaml").mkdir()  # a directory with a manifest's name is walked, not read
    os.mkfifo(tmp_path / "fifo.yaml")  # reading it would block forever
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop").symlink_to(tmp_path)  # os.walk does not follow it
    out = docket("validate", "-f", str(tmp_path))
    assert out.returncode == 1, out
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    by_file = {line.split(": ")[0].rsplit("/", 1)[-1] for line in lines}
    assert by_file == {"random.yaml", "binary.json", "deep.yaml", "deep.json", "python.yaml",
                       "fifo.yaml", "dangling.yaml"}, lines
    assert any("fifo.yaml: file: cannot read: not a regular file" in line for line in lines)
    assert any("python.yaml: file: invalid YAML:" in line for line in lines)
    assert any("deep.json: file: invalid JSON: nested too deeply" in line for line in lines)


@pytest.mark.integration
def test_exit_codes(tmp_path: Path) -> None:
    assert docket("validate", "-f", "deploy/examples").returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    out = docket("validate", "-f", str(empty))
    assert out.returncode == 1 and "no manifest files" in out.stdout
    usage = docket("validate")
    assert usage.returncode == 2 and "-f" in usage.stderr
