"""The admin API: fault injection over HTTP, for tests and chaos experiments run against a
`docket local-mesos` in another process. Each endpoint calls one of the fault hooks of
`LocalMesos` (cluster.py), which in-process tests call directly; the faults themselves are
faults.py's. Off unless the cluster was started with `enable_faults` (`--enable-faults`): the
master then answers every `/admin/...` request 403 (http.py), since this API kills masters and
agents for anyone who can reach the port. The test fixtures and the chaos suite turn it on.

POST, JSON body, on the master's port:
    /admin/agents                    {"cpus","mem","disk","gpus","attributes","simulate"}
                                     -> {"agent_id"}
    /admin/agents/<id>/remove        the agent is gone for good
    /admin/agents/<id>/partition     the agent becomes unreachable
    /admin/agents/<id>/heal          an unreachable agent reregisters
    /admin/master/restart            {"forget_frameworks": bool}: drop every stream
    /admin/masters/kill-leader       the leading master dies (HA, ha.py) -> {"killed": index}
    /admin/masters/<i>/kill          master i dies
    /admin/masters/<i>/start         master i starts again and stands by
    /admin/streams/silence           every stream stays open but goes silent (half-open)
    /admin/offers/<id>/rescind       rescind one outstanding offer
    /admin/updates                   {"delay": s, "duplicate": bool, "drop": n}
    /admin/launches/fail             {"count": n}: the next n launches fail
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from controller.localmesos.http_server import RequestHandler

if TYPE_CHECKING:
    from controller.localmesos.cluster import LocalMesos


def admin(cluster: LocalMesos, h: RequestHandler, method: str, path: str) -> None:
    if method != "POST":
        h.reply(405, "admin endpoints take POST", headers={"Allow": "POST"})
        return
    try:
        body = json.loads(h.body() or b"{}")
    except json.JSONDecodeError as exc:
        h.reply(400, f"invalid JSON: {exc}")
        return
    parts = path.strip("/").split("/")
    try:
        if parts == ["admin", "agents"]:
            agent = cluster.add_agent(
                cpus=float(body.get("cpus", 4)), mem=float(body.get("mem", 4096)),
                disk=float(body.get("disk", 10240)), gpus=float(body.get("gpus", 0)),
                attributes=body.get("attributes") or {},
                simulate=bool(body.get("simulate", cluster.config.simulate)))
            h.reply(200, {"agent_id": agent})
        elif len(parts) == 4 and parts[1] == "agents" and parts[3] in (
                "remove", "partition", "heal"):
            getattr(cluster, f"{parts[3]}_agent")(parts[2])
            h.reply(200, {"ok": True})
        elif parts == ["admin", "master", "restart"]:
            cluster.restart_master(forget_frameworks=bool(body.get("forget_frameworks")))
            h.reply(200, {"ok": True})
        elif parts == ["admin", "masters", "kill-leader"]:
            # Answered on this connection even when this master is the one that dies.
            killed = cluster.kill_leading_master(keep=h.connection)
            h.reply(200, {"killed": killed}, headers={"Connection": "close"})
        elif len(parts) == 4 and parts[1] == "masters" and parts[3] in ("kill", "start"):
            index = int(parts[2])
            if not 0 <= index < len(cluster.masters.nodes):
                raise KeyError(parts[2])
            if parts[3] == "kill":
                cluster.masters.kill(index, keep=h.connection)
            else:
                cluster.start_master(index)
            h.reply(200, {"ok": True}, headers={"Connection": "close"})
        elif parts == ["admin", "streams", "silence"]:
            cluster.half_open_streams()
            h.reply(200, {"ok": True})
        elif len(parts) == 4 and parts[1] == "offers" and parts[3] == "rescind":
            h.reply(200, {"rescinded": cluster.rescind_offer(parts[2])})
        elif parts == ["admin", "updates"]:
            cluster.fault_updates(delay=float(body.get("delay", 0)),
                            duplicate=bool(body.get("duplicate", False)),
                            drop=int(body.get("drop", 0)))
            h.reply(200, {"ok": True})
        elif parts == ["admin", "launches", "fail"]:
            cluster.fail_next_launches(int(body.get("count", 1)))
            h.reply(200, {"ok": True})
        else:
            h.reply(404, f"unknown admin endpoint {path}")
    except KeyError as exc:
        h.reply(404, f"unknown id {exc}")
    except ValueError as exc:
        h.reply(400, str(exc))
    except RuntimeError as exc:
        h.reply(409, str(exc))
