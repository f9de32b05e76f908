"""Where the Mesos masters are: the forms `--mesos-master` takes, and which master leads.

Three forms, as Mesos' own tools and schedulers take them:
- `host:port` or `http://host:port`: one master (normalised to `http://host:port`);
- `host1:5050,host2:5050` (each optionally `http://`): masters in HA, tried in turn; a
  standby answers the scheduler API with a 307 redirect to the leader, which is followed;
- `zk://host:port[,host:port]/path`: the ZooKeeper group the masters contend in; pymesos'
  MasterDetector follows the leader there (the smallest `json.info_<seq>` child's
  `address`, src/master/detector/zookeeper.cpp writes and reads the same data).
Plain HTTP only (pymesos has no TLS), and no ZooKeeper credentials (pymesos' detector passes
the URL's authority to kazoo as a host list).

`leader_url` answers which master leads right now, for one-off reads (`docket logs`): from
ZooKeeper's data, or from `/master/redirect`, which every master of Mesos 1.x answers with a
307 to the leader's `//host:port` (src/master/http.cpp `Master::Http::redirect`).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

EXAMPLES = ("e.g. mesos-master:5050, http://mesos-master:5050, m1:5050,m2:5050 or "
            "zk://zk1:2181,zk2:2181/mesos")


@dataclass(frozen=True)
class MasterSpec:
    addresses: tuple[str, ...] = ()
    """`host:port` of each master, in the order given (empty with `zk`)."""
    zk: str | None = None
    """The `zk://` URL, as given."""

    def __str__(self) -> str:
        return self.zk or ",".join(f"http://{a}" for a in self.addresses)


def _address(text: str) -> str:
    if text.startswith("https://"):
        raise ValueError("TLS to the Mesos master is not supported (pymesos speaks plain "
                         "HTTP); give an http:// URL, e.g. behind a TLS-terminating proxy")
    address = text.removeprefix("http://").rstrip("/")
    host, sep, port = address.rpartition(":")
    if (not sep or not host or "/" in address or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise ValueError(f"must be host:port or an http:// URL, {EXAMPLES}")
    return address


def _zk(text: str) -> str:
    servers, slash, path = text[len("zk://"):].partition("/")
    if "@" in servers:
        raise ValueError("ZooKeeper credentials are not supported (pymesos' master "
                         "detector cannot pass them); give zk://host:port[,host:port]/path")
    if not servers or not slash or not path.strip("/"):
        raise ValueError(f"must be zk://host:port[,host:port]/path, {EXAMPLES}")
    for server in servers.split(","):
        host, sep, port = server.rpartition(":")
        if not host or not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"ZooKeeper server {server!r} must be host:port, {EXAMPLES}")
    return f"zk://{servers}/{path.strip('/')}"


def parse_masters(value: str) -> MasterSpec:
    """The spec in `value`; ValueError saying what is wrong."""
    value = value.strip()
    if value.startswith("zk://"):
        return MasterSpec(zk=_zk(value))
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        raise ValueError(f"an empty master in the list, {EXAMPLES}")
    return MasterSpec(addresses=tuple(_address(p) for p in parts))


def normalize(value: str) -> str:
    """The canonical text of `value`: `http://host:port[,http://host:port...]` or the
    `zk://` URL."""
    return str(parse_masters(value))


def _zk_leader(url: str, timeout: float) -> str:
    from kazoo.client import KazooClient  # type: ignore[import-untyped]
    from kazoo.exceptions import NoNodeError  # type: ignore[import-untyped]

    servers, _, path = url[len("zk://"):].partition("/")
    client = KazooClient(hosts=servers, timeout=timeout)
    try:
        client.start(timeout=timeout)
    except Exception as exc:
        client.close()
        raise LookupError(f"cannot reach ZooKeeper at {servers}: {exc}") from None
    try:
        children = client.get_children("/" + path)
        members = sorted((int(c.rsplit("_", 1)[-1]), c) for c in children
                         if c.rsplit("_", 1)[-1].isdigit())
        if not members:
            raise LookupError(f"no Mesos master is in the group {url}")
        child = members[0][1]
        if not child.startswith("json.info_"):
            raise LookupError(f"the leading member {child} of {url} is not a MasterInfo "
                              "in JSON (json.info_*)")
        info = json.loads(client.get(f"/{path}/{child}")[0])
        address = info["address"]
        return f"http://{address['ip']}:{address['port']}"
    except NoNodeError:
        raise LookupError(f"no Mesos master group at {url}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LookupError(f"the leader's data in {url} is not a MasterInfo: {exc}") from None
    finally:
        client.stop()
        client.close()


def _redirect_leader(address: str, timeout: float) -> str:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/master/redirect")
        resp = conn.getresponse()
        resp.read()
        location = resp.getheader("Location") or ""
        if resp.status == 307 and location.startswith("//"):
            return "http:" + location.rstrip("/")
        if resp.status == 307 and location.startswith("http://"):
            return location.rstrip("/")
        raise LookupError(f"{address} answered /master/redirect with {resp.status}")
    except (OSError, http.client.HTTPException) as exc:
        raise LookupError(f"{address}: {exc}") from None
    finally:
        conn.close()


def leader_url(spec: MasterSpec | str, timeout: float = 10.0) -> str:
    """`http://host:port` of the master that leads now; LookupError naming what was tried.
    A single master is taken as it is (a standby redirects whoever asks it)."""
    if isinstance(spec, str):
        spec = parse_masters(spec)
    if spec.zk:
        return _zk_leader(spec.zk, timeout)
    if len(spec.addresses) == 1:
        return f"http://{spec.addresses[0]}"
    failures = []
    for address in spec.addresses:
        try:
            return _redirect_leader(address, timeout)
        except LookupError as exc:
            failures.append(str(exc))
    raise LookupError("no master named a leader: " + "; ".join(failures))
