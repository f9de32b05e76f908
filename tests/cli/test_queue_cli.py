"""The Queue commands as a user runs them, against a real etcd and a real Redis: `docket queue
push` (arguments, a file, standard input), `docket get queues` and `describe queue` with a
status written by hand, and `docket queue dead`/`requeue` over dead letters written in the
controller's formats (etcd: JSON under the dead-letter prefix; Redis: the dead list written by
`RedisQueue.dead_letter`)."""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from controller.api import BatchSummary, Condition, ExecutionRecord, QueueStatus
from controller.cli.main import build_parser, main
from controller.queues.redis_server import RedisServer
from controller.queues.redis_source import RedisQueue
from controller.store import EtcdServer, Store
from controller.store.etcd_server import free_port

integration = pytest.mark.integration

BIN = Path(sys.executable).parent
T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)
TEMPLATE = {"command": "python3 -m mailer.send", "resources": {"cpus": 0.2, "mem": 128}}


def queue_doc(source: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "docket.dev/v1", "kind": "Queue",
            "spec": {"source": source or {"type": "etcd"}, "template": TEMPLATE, **spec}}


class Cli:
    def __init__(self, store: Store, endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store, self.endpoint, self.capsys = store, endpoint, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main([*argv, "--etcd", self.endpoint, "--prefix", self.store.keys.prefix])
        out, err = self.capsys.readouterr()
        return code, out, err

    def process(self, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        """The installed `docket` command, in a process of its own (the etcd options come
        first: `argv` may end with `-- MESSAGE...`)."""
        head, tail = argv[:2], argv[2:]
        return subprocess.run(
            [str(BIN / "docket"), *head, "--etcd", self.endpoint,
             "--prefix", self.store.keys.prefix, *tail],
            input=stdin, capture_output=True, timeout=60, check=False)

    def put_queue(self, name: str, doc: dict[str, Any], namespace: str = "default") -> int:
        self.store.put_raw(self.store.keys.object("queues", namespace, name),
                           json.dumps(doc).encode())
        stored = self.store.get("queues", namespace, name)
        assert stored is not None
        return stored.uid

    def items(self, name: str, namespace: str = "default") -> list[tuple[str, bytes]]:
        """(item id, message) of every item, in key order (what `etcdctl get --prefix`
        shows)."""
        prefix = self.store.keys.queue_items_prefix(namespace, name)
        found, _ = self.store.list_raw(prefix)
        return [(key[len(prefix):], value) for key, value, *_ in found]


@pytest.fixture
def cli(store: Store, etcd_server: EtcdServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(store, etcd_server.endpoint, capsys)


def rows(out: str) -> list[dict[str, str]]:
    """Rows of a table as {header: cell}, cut at the headers' columns."""
    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    return [dict(zip(names, [line[a:b].strip() for a, b in
                             zip(starts, [*starts[1:], None], strict=True)], strict=True))
            for line in lines[1:]]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- push ---------------------------------------------------------------------------------------
@integration
def test_push_etcd_arguments_file_and_stdin_in_order(cli: Cli, tmp_path: Path) -> None:
    cli.put_queue("inbox", queue_doc())
    code, out, err = cli("queue", "push", "default/inbox", "first", "second message")
    assert code == 0, err
    prefix = cli.store.keys.queue_items_prefix("default", "inbox")
    assert out.strip() == f"pushed 2 message(s) to queue default/inbox (etcd, under {prefix})"

    # A file: one message per line, CRLF or LF, empty lines skipped; after the arguments.
    messages = tmp_path / "messages.txt"
    messages.write_bytes(b"third\r\n\nfourth \xe2\x9c\x89\n\n")
    code, out, err = cli("queue", "push", "inbox", "-n", "default", "arg", "-f", str(messages))
    assert code == 0, err
    assert "pushed 3 message(s)" in out

    # Standard input, through the installed command; a message may start with '-' after --.
    done = cli.process("queue", "push", "default/inbox", "-f", "-", "--", "-dash",
                       stdin=b"from stdin 1\nfrom stdin 2\n")
    assert done.returncode == 0, done.stderr
    assert b"pushed 3 message(s) to queue default/inbox" in done.stdout

    items = cli.items("inbox")
    assert [m for _, m in items] == [
        b"first", b"second message", b"arg", b"third", "fourth ✉".encode(), b"-dash",
        b"from stdin 1", b"from stdin 2"]
    ids = [i for i, _ in items]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{8}", i) for i in ids), ids
    # Key order is push order, so etcdctl lists them as they were pushed; and each key was
    # created in that order (the controller takes the oldest first by create revision).
    listed = subprocess.run(
        [str(BIN / "etcdctl"), "--endpoints", cli.endpoint, "get", "--prefix", prefix,
         "--print-value-only"], capture_output=True, timeout=30, check=True).stdout
    assert listed.splitlines()[:2] == [b"first", b"second message"]
    found, _ = cli.store.list_raw(prefix)
    creates = [create for _key, _value, _mod, create, _version in found]
    assert creates == sorted(creates)


@integration
def test_push_many_messages_in_several_transactions(cli: Cli, tmp_path: Path) -> None:
    cli.put_queue("bulk", queue_doc())
    lines = tmp_path / "bulk.txt"
    lines.write_text("".join(f"message {i:04d}\n" for i in range(250)))
    code, out, err = cli("queue", "push", "default/bulk", "-f", str(lines))
    assert code == 0, err
    assert "pushed 250 message(s)" in out
    assert [m for _, m in cli.items("bulk")] == [f"message {i:04d}".encode()
                                                for i in range(250)]


@integration
@pytest.mark.parametrize("argv, message", [
    (["queue", "push", "default/nope", "x"], "queue default/nope not found (no key "),
    (["queue", "push", "default/inbox"], "queue default/inbox: no message to push"),
    (["queue", "push", "default/inbox", "-f", "/nonexistent/file"],
     "cannot read /nonexistent/file"),
    (["queue", "push", "default/broken", "x"], "queue default/broken is invalid"),
    (["queue", "dead", "default/nope"], "queue default/nope not found"),
    (["queue", "requeue", "default/inbox"], "give either --all or the IDs"),
    (["queue", "requeue", "default/inbox", "--all", "some-id"], "give either --all or the IDs"),
    (["queue", "requeue", "default/nope", "--all"], "queue default/nope not found"),
])
def test_user_errors_exit_1_with_one_line_naming_the_queue(cli: Cli, argv: list[str],
                                                           message: str) -> None:
    cli.put_queue("inbox", queue_doc())
    cli.put_queue("broken", queue_doc(batchSize=0))
    code, _, err = cli(*argv)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith(f"docket queue {argv[1]}: ") and message in line, line
    assert cli.items("inbox") == []


@integration
def test_push_redis_appends_to_the_list(cli: Cli, redis_server: RedisServer,
                                        tmp_path: Path) -> None:
    cli.put_queue("jobs", queue_doc({"type": "redis", "url": redis_server.url, "key": "jobs"}))
    client = redis.Redis.from_url(redis_server.url)
    client.rpush("jobs", b"already there")
    (tmp_path / "more.txt").write_bytes(b"b\nc\n")
    code, out, err = cli("queue", "push", "default/jobs", "a", "-f", str(tmp_path / "more.txt"))
    assert code == 0, err
    assert out.strip() == (f"pushed 3 message(s) to queue default/jobs (redis list 'jobs' at "
                           f"{redis_server.endpoint}, 4 long now)")
    assert client.lrange("jobs", 0, -1) == [b"already there", b"a", b"b", b"c"]
    client.close()


@integration
def test_redis_down_is_one_line_naming_the_queue_and_never_the_password(cli: Cli) -> None:
    port = free_port()
    cli.put_queue("jobs", queue_doc({"type": "redis", "url": f"redis://:s3cret@127.0.0.1:{port}",
                                     "key": "jobs"}))
    for argv in (["queue", "push", "default/jobs", "x"], ["queue", "dead", "default/jobs"],
                 ["queue", "requeue", "default/jobs", "--all"]):
        code, _, err = cli(*argv)
        assert code == 1
        line = one_error_line(err)
        assert f"queue default/jobs: Redis at 127.0.0.1:{port} unavailable" in line, line
        assert "s3cret" not in err


# --- get and describe ---------------------------------------------------------------------------
def _status(uid: int) -> QueueStatus:
    return QueueStatus(
        uid=uid, observed_revision=1, phase="Active", pending=12, in_flight=3, succeeded=40,
        dead_lettered=2, failed_attempts=5, active=1, oldest_pending_seconds=185,
        oldest_pending_since=T0, next_batch=17, last_poll_time=T0,
        conditions=[Condition(type="SourceUnavailable", status="False", reason="SourceOk",
                              last_transition_time=T0)],
        recent_batches=[
            BatchSummary(batch=14, task_id=f"queue.default.inbox.{uid}.14.0", messages=3,
                         result="Succeeded", exit_code=0, finished_at=T0),
            BatchSummary(batch=15, task_id=f"queue.default.inbox.{uid}.15.3", messages=2,
                         result="DeadLettered", reason="BackoffLimitExceeded", attempts=4,
                         exit_code=1, finished_at=T0 + timedelta(minutes=1)),
        ])


@integration
def test_get_queues_shows_exact_counts_and_oldest_age(cli: Cli) -> None:
    uid = cli.put_queue("inbox", queue_doc(batchSize=3, maxConcurrent=2))
    cli.store.put_status("queues", "default", "inbox", _status(uid), None)
    cli.put_queue("fresh", queue_doc({"type": "redis", "url": "redis://127.0.0.1:1",
                                      "key": "k"}))
    cli.put_queue("broken", queue_doc(batchSize=0))

    code, out, err = cli("get", "queues")
    assert code == 0, err
    table = rows(out)
    assert list(table[0]) == ["NAME", "PHASE", "SOURCE", "PENDING", "IN-FLIGHT", "SUCCEEDED",
                              "DEAD", "OLDEST", "ACTIVE"]
    by_name = {r["NAME"]: r for r in table}
    assert by_name["inbox"] == {
        "NAME": "inbox", "PHASE": "Active", "SOURCE": "etcd", "PENDING": "12",
        "IN-FLIGHT": "3", "SUCCEEDED": "40", "DEAD": "2", "OLDEST": "3m", "ACTIVE": "1"}
    assert by_name["fresh"] == {
        "NAME": "fresh", "PHASE": "Pending", "SOURCE": "redis", "PENDING": "0",
        "IN-FLIGHT": "0", "SUCCEEDED": "0", "DEAD": "0", "OLDEST": "-", "ACTIVE": "0"}
    assert by_name["broken"]["PHASE"] == "Invalid" and by_name["broken"]["PENDING"] == "-"

    code, out, err = cli("get", "queue", "inbox", "-o", "wide")
    assert code == 0, err
    (row,) = rows(out)
    assert row["BATCH"] == "3" and row["MAX-CONCURRENT"] == "2"
    assert row["COMMAND"] == "python3 -m mailer.send"
    assert list(row)[-5:] == ["BATCH", "MAX-CONCURRENT", "LAST-POLL", "COMMAND", "REASON"]

    code, out, _ = cli("get", "queues", "-o", "json")
    items = {i["metadata"]["name"]: i for i in json.loads(out)["items"]}
    assert items["inbox"]["status"]["inFlight"] == 3
    assert items["inbox"]["status"]["oldestPendingSeconds"] == 185


@pytest.mark.parametrize("seconds, shown", [
    (None, "-"), (0, "0s"), (5, "5s"), (59, "59s"), (60, "1m"), (185, "3m"), (3599, "59m"),
    (7300, "2h"), (86400 * 3 + 5, "3d")])
def test_oldest_is_shown_in_its_largest_unit(seconds: int | None, shown: str) -> None:
    from controller.cli.get import _coarse

    assert _coarse(seconds) == shown


@integration
def test_describe_queue_shows_spec_counts_recent_and_open_batches(cli: Cli) -> None:
    uid = cli.put_queue("inbox", queue_doc(batchSize=3, maxConcurrent=2, backoffLimit=3))
    cli.store.put_status("queues", "default", "inbox", _status(uid), None)
    # Batch 16 is open: its first attempt failed, its second runs.
    for attempt, state, exit_code in ((0, "TASK_FAILED", 2), (1, "TASK_RUNNING", None)):
        cli.store.put_execution("queues", "default", "inbox", ExecutionRecord(
            task_id=f"queue.default.inbox.{uid}.16.{attempt}", index=16, attempt=attempt,
            state=state, exit_code=exit_code, hostname="agent-1", started_at=T0,
            message_ids=["a", "b", "c"], message_count=3))
    # A record of an earlier Queue of the same name, being cleaned up.
    cli.store.put_execution("queues", "default", "inbox", ExecutionRecord(
        task_id="queue.default.inbox.1.0.0", index=0, attempt=0, state="TASK_KILLED"))

    code, out, err = cli("describe", "queue", "default/inbox")
    assert code == 0, err
    prefix = cli.store.keys.prefix
    for line in (
        "Kind:       Queue",
        f"Source:       etcd, keys under {prefix}/queue-items/default/inbox/, watched",
        "Batches:      up to 3 message(s) and 65536 bytes each (separator '\\n'), "
        "max concurrent 2",
        f"Dead letter:  etcd, keys under {prefix}/queue-dead/default/inbox/ (default)",
        "Retries:      backoffLimit 3, systemRetryLimit 10",
        "Messages:     12 pending, 3 in flight, 40 succeeded, 2 dead-lettered",
        "Tasks:        1 active, 5 failed attempts",
        "Oldest:       3m5s (seen first 2026-11-23T08:00:00Z)",
        "Next batch:   17",
        "Recent batches (2, newest first):",
        "Open batches (1):",
        "(1 execution record(s) of an earlier Queue of this name, being cleaned up)",
    ):
        assert line in out, f"{line!r} not in:\n{out}"
    recent = out[out.index("Recent batches"):out.index("Open batches")]
    table = rows("\n".join(line.strip() for line in recent.splitlines()[1:]))
    assert [r["BATCH"] for r in table] == ["15", "14"]
    assert table[0] == {
        "BATCH": "15", "TASK": f"queue.default.inbox.{uid}.15.3", "MESSAGES": "2",
        "RESULT": "DeadLettered", "REASON": "BackoffLimitExceeded", "ATTEMPTS": "4",
        "EXIT-CODE": "1", "FINISHED": "2026-11-23T08:01:00Z"}
    opened = out[out.index("Open batches"):].splitlines()[1:3]
    (batch,) = rows("\n".join(line.strip() for line in opened))
    assert batch["TASK"] == f"queue.default.inbox.{uid}.16.1"
    assert (batch["MESSAGES"], batch["STATE"], batch["ATTEMPTS"]) == ("3", "TASK_RUNNING", "2")

    # A Redis queue: where its list and dead list are, never the URL's password.
    cli.put_queue("jobs", queue_doc({"type": "redis", "url": "redis://:pw@10.0.0.5:6380/2",
                                     "key": "jobs"}, deadLetter={"key": "jobs-failed"}))
    code, out, err = cli("describe", "queue", "default/jobs")
    assert code == 0, err
    assert "Source:       redis list 'jobs' at 10.0.0.5:6380, polled every 5s" in out
    assert "Dead letter:  redis list 'jobs-failed'" in out
    assert "pw" not in out.replace("python3", "")


# --- dead and requeue, etcd ---------------------------------------------------------------------
def _dead(cli: Cli, prefix: str, item: str, message: bytes, reason: str = "BackoffLimitExceeded",
          execution: str = "queue.default.inbox.7.3.6") -> None:
    """A dead letter as the controller writes it."""
    entry: dict[str, str] = {"reason": reason, "execution": execution,
                             "at": (T0 + timedelta(minutes=len(item))).isoformat()}
    try:
        entry["message"] = message.decode("utf-8")
    except UnicodeDecodeError:
        entry["message"] = base64.b64encode(message).decode()
        entry["encoding"] = "base64"
    cli.store.put_raw(prefix + item, json.dumps(entry, sort_keys=True).encode())


@integration
def test_dead_and_requeue_etcd(cli: Cli) -> None:
    cli.put_queue("inbox", queue_doc())
    prefix = cli.store.keys.queue_dead_prefix("default", "inbox")
    code, out, err = cli("queue", "dead", "default/inbox")
    assert code == 0, err
    assert out.strip() == f"No dead letters for queue default/inbox ({prefix})."

    long_text = "line one\nline two " + "x" * 80
    binary = b"\xff\x00\xfe binary"
    _dead(cli, prefix, "id-a", long_text.encode())
    _dead(cli, prefix, "id-bb", binary, reason="MessageTooLarge", execution="")
    _dead(cli, prefix, "id-ccc", b"poison")
    cli.store.put_raw(prefix + "id-dddd", b"written by someone else")

    code, out, err = cli("queue", "dead", "default/inbox")
    assert code == 0, err
    table = rows(out)
    assert [r["ID"] for r in table] == ["id-a", "id-bb", "id-ccc", "id-dddd"]  # oldest first
    assert table[0]["REASON"] == "BackoffLimitExceeded"
    assert table[0]["EXECUTION"] == "queue.default.inbox.7.3.6"
    assert table[0]["AT"] == "2026-11-23T08:04:00Z"
    assert table[0]["MESSAGE"].startswith("line one\\nline two xxx")
    assert table[0]["MESSAGE"].endswith("...") and len(table[0]["MESSAGE"]) == 50
    assert table[1]["REASON"] == "MessageTooLarge" and table[1]["EXECUTION"] == "-"
    assert table[1]["MESSAGE"] == "<10 bytes, not UTF-8>"
    assert table[3]["REASON"] == "unknown" and table[3]["AT"] == "-"

    code, out, err = cli("queue", "dead", "default/inbox", "-o", "json")
    assert code == 0, err
    docs = {d["id"]: d for d in json.loads(out)["items"]}
    assert docs["id-a"]["message"] == long_text
    assert base64.b64decode(docs["id-bb"]["message"]) == binary
    assert docs["id-bb"]["encoding"] == "base64"

    # Unknown ids: an error naming them, and nothing moves.
    code, _, err = cli("queue", "requeue", "default/inbox", "id-a", "nope", "gone")
    assert code == 1
    assert "no dead letter with id nope, gone in " in one_error_line(err)
    assert len(cli.store.list_raw(prefix)[0]) == 4 and cli.items("inbox") == []

    code, out, err = cli("queue", "requeue", "default/inbox", "id-bb", "id-a")
    assert code == 0, err
    assert out.strip() == "requeued 2 message(s) to queue default/inbox"
    assert dict(cli.items("inbox")) == {"id-a": long_text.encode(), "id-bb": binary}
    assert sorted(k[len(prefix):] for k, *_ in cli.store.list_raw(prefix)[0]) == \
        ["id-ccc", "id-dddd"]

    # An item of the same id is in the queue already: that one stays dead, the rest moves.
    cli.store.put_raw(cli.store.keys.queue_item("default", "inbox", "id-ccc"), b"other")
    code, out, err = cli("queue", "requeue", "default/inbox", "--all")
    assert code == 1
    assert "requeued 1 message(s)" in out
    assert "id-ccc left in the dead letter: the queue holds an item with the same id" in err
    assert dict(cli.items("inbox"))["id-dddd"] == b"written by someone else"
    assert [k[len(prefix):] for k, *_ in cli.store.list_raw(prefix)[0]] == ["id-ccc"]


@integration
def test_dead_letter_under_a_key_of_the_spec(cli: Cli) -> None:
    dead = cli.store.keys.queue_dead_namespace("default") + "mail-custom/"
    cli.put_queue("mail", queue_doc(deadLetter={"key": dead}))
    _dead(cli, dead, "m1", b"hello")
    code, out, err = cli("queue", "dead", "default/mail")
    assert code == 0, err
    assert [r["ID"] for r in rows(out)] == ["m1"]
    code, out, err = cli("queue", "requeue", "default/mail", "m1")
    assert code == 0, err
    assert cli.items("mail") == [("m1", b"hello")]
    assert cli.store.get_raw(dead + "m1") is None


# --- dead and requeue, Redis --------------------------------------------------------------------
@integration
def test_dead_and_requeue_redis(cli: Cli, redis_server: RedisServer) -> None:
    cli.put_queue("jobs", queue_doc({"type": "redis", "url": redis_server.url, "key": "jobs"}))
    code, out, err = cli("queue", "dead", "default/jobs")
    assert code == 0, err
    assert out.strip() == (f"No dead letters for queue default/jobs (redis list 'jobs:dead' "
                           f"at {redis_server.endpoint}).")

    # Dead letters as the controller makes them: a batch claimed, then dead-lettered.
    source = RedisQueue(redis_server.url, "jobs")
    source.push([b"poison 1", b"\xff\xfe", b"poison 3", b"fine"])
    assert source.claim("default.jobs.7.0", count=3, max_bytes=1000) == [
        b"poison 1", b"\xff\xfe", b"poison 3"]
    source.dead_letter("default.jobs.7.0", "jobs:dead", "BackoffLimitExceeded",
                       "queue.default.jobs.7.0.6", T0)

    code, out, err = cli("queue", "dead", "default/jobs")
    assert code == 0, err
    table = rows(out)
    ids = [r["ID"] for r in table]
    assert ids == [f"queue.default.jobs.7.0.6:{i}" for i in range(3)]
    assert table[0]["REASON"] == "BackoffLimitExceeded"
    assert table[0]["AT"] == "2026-11-23T08:00:00Z"
    assert [r["MESSAGE"] for r in table] == ["poison 1", "<2 bytes, not UTF-8>", "poison 3"]

    code, _, err = cli("queue", "requeue", "default/jobs", ids[0], "nope")
    assert code == 1 and "no dead letter with id nope in redis list 'jobs:dead'" in err
    assert source.length() == 1

    code, out, err = cli("queue", "requeue", "default/jobs", ids[1])
    assert code == 0, err
    assert out.strip() == "requeued 1 message(s) to queue default/jobs"
    code, out, err = cli("queue", "requeue", "default/jobs", "--all")
    assert code == 0, err
    assert "requeued 2 message(s)" in out
    client = redis.Redis.from_url(redis_server.url)
    assert client.lrange("jobs", 0, -1) == [b"fine", b"\xff\xfe", b"poison 1", b"poison 3"]
    assert client.exists("jobs:dead") == 0
    client.close()
    source.close()


# --- help ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["push", "dead", "requeue"])
def test_queue_subcommands_help_shows_defaults(action: str) -> None:
    parser = build_parser()
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    queue = top.choices["queue"]
    nested = next(a for a in queue._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(nested.choices[action].format_help().split())
    assert "(default: $DOCKET_ETCD_ENDPOINTS or 127.0.0.1:2379)" in text
    assert "(default: $DOCKET_KEY_PREFIX or /docket)" in text
    assert "(default: default, or the one in NS/NAME)" in text
