"""Offer parsing and first-fit matching: resources, ports, roles and constraints."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.api.template import Constraint
from controller.mesos.offers import Offer, Placement, Placements, TaskRequest, match
from tests.mesos.offers_util import offer_json


def c(*parts: str) -> Constraint:
    return Constraint.model_validate(list(parts))


def req(task_id: str, group: str = "g", **kw: object) -> TaskRequest:
    return TaskRequest(task_id=task_id, group=group, **kw)  # type: ignore[arg-type]


def test_parse_reads_resources_attributes_and_ids() -> None:
    raw = offer_json("o1", "h1", cpus=2.5, mem=1024, disk=100, gpus=1,
                     ports=[(31000, 31009)], attributes={"rack": "r1"})
    raw["attributes"].append({"name": "size", "type": "SCALAR", "scalar": {"value": 3.0}})
    offer = Offer.parse(raw)
    assert (offer.id, offer.agent_id, offer.hostname) == ("o1", "agent-h1", "h1")
    assert offer.total("cpus") == 2.5 and offer.total("mem") == 1024
    assert offer.total("disk") == 100 and offer.total("gpus") == 1
    assert offer.port_count() == 10
    assert offer.attributes == {"rack": "r1", "size": "3"}


def test_many_tasks_per_offer_first_fit_and_fixed_point() -> None:
    offer = Offer.parse(offer_json("o1", "h1", cpus=1.0, mem=1000))
    requests = [req(f"t{i}", cpus=0.1, mem=100) for i in range(11)]
    result = match([offer], requests)
    # 10 x 0.1 CPU fills 1.0 exactly (no float drift); the 11th does not fit.
    assert [a.task_id for a in result.by_offer["o1"]] == [f"t{i}" for i in range(10)]
    assert [r.task_id for r in result.unmatched] == ["t10"]
    assert result.unused == []


def test_resources_copy_role_and_allocation_info() -> None:
    offer = Offer.parse(offer_json("o1", "h1", cpus=2, mem=512, ports=[(100, 102)], role="web"))
    (a,) = match([offer], [req("t", cpus=1, mem=256, ports=2)]).assignments
    by_name = {r["name"]: r for r in a.resources}
    assert by_name["cpus"] == {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
                               "role": "web", "allocation_info": {"role": "web"}}
    assert by_name["ports"]["ranges"] == {"range": [{"begin": 100, "end": 101}]}
    assert by_name["ports"]["allocation_info"] == {"role": "web"}
    assert a.ports == (100, 101)


def test_ports_fixed_and_dynamic_never_reused() -> None:
    offer = Offer.parse(offer_json("o1", "h1", ports=[(8000, 8002)]))
    result = match([offer], [
        req("a", host_ports=(8001,), ports=1),
        req("b", ports=1),
        req("c", ports=1),
        req("d", host_ports=(8001,)),
    ])
    got = {a.task_id: a.ports for a in result.assignments}
    assert got == {"a": (8001, 8000), "b": (8002,)}
    assert [r.task_id for r in result.unmatched] == ["c", "d"]


def test_unused_offers_and_gpus() -> None:
    o1 = Offer.parse(offer_json("o1", "h1"))
    o2 = Offer.parse(offer_json("o2", "h2", gpus=2))
    result = match([o1, o2], [req("t", cpus=1, gpus=1)])
    assert list(result.by_offer) == ["o2"]
    assert [o.id for o in result.unused] == ["o1"]


def test_unique_counts_running_and_same_pass_tasks() -> None:
    offers = [Offer.parse(offer_json(f"o{i}", f"h{i}")) for i in range(3)]
    cons = (c("hostname", "UNIQUE"),)
    running: dict[str, list[Placement]] = {"g": [("h0", {})]}
    result = match(offers, [req(f"t{i}", cpus=0.1, constraints=cons) for i in range(3)], running)
    hosts = [a.offer.hostname for a in result.assignments]
    assert hosts == ["h1", "h2"]
    assert [r.task_id for r in result.unmatched] == ["t2"]
    assert running == {"g": [("h0", {})]}  # the caller's mapping is left alone


def test_constraints_are_per_group() -> None:
    offer = Offer.parse(offer_json("o1", "h1"))
    cons = (c("hostname", "UNIQUE"),)
    result = match([offer], [req("a", group="x", cpus=0.1, constraints=cons),
                             req("b", group="y", cpus=0.1, constraints=cons)])
    assert len(result.assignments) == 2


def test_placements_are_kept_by_task_and_read_by_group() -> None:
    p = Placements()
    p.add("a1", "a", "h1", {"zone": "z1"})
    p.add("a2", "a", "h2", {})
    p.add("b1", "b", "h1", {})
    assert p.get("a1") == ("a", ("h1", {"zone": "z1"}))
    assert p.of_groups(["a", "missing"]) == {"a": [("h1", {"zone": "z1"}), ("h2", {})]}
    p.add("a1", "a", "h3", {})  # moved (e.g. learnt again from an update): no duplicate
    p.remove("a2")
    p.remove("never-there")
    assert p.of_groups(["a", "b"]) == {"a": [("h3", {})], "b": [("h1", {})]}
    p.remove("a1")
    assert p.of_groups(["a"]) == {} and p.get("a1") is None
    # What an offer round reads is a copy: matching cannot change the record.
    read = p.of_groups(["b"])
    read["b"].append(("h9", {}))
    assert p.of_groups(["b"]) == {"b": [("h1", {})]}


def test_group_by_spreads_evenly() -> None:
    offers = [Offer.parse(offer_json(f"o{i}", f"h{i}", attributes={"zone": z}))
              for i, z in enumerate(["a", "a", "b", "b", "c"])]
    cons = (c("zone", "GROUP_BY", "3"),)
    result = match(offers, [req(f"t{i}", cpus=0.1, constraints=cons) for i in range(6)])
    zones = Counter(a.offer.attributes["zone"] for a in result.assignments)
    assert zones == {"a": 2, "b": 2, "c": 2}


def test_max_per_and_cluster() -> None:
    offers = [Offer.parse(offer_json(f"o{i}", f"h{i}", attributes={"rack": r}))
              for i, r in enumerate(["r1", "r2"])]
    result = match(offers, [req(f"t{i}", cpus=0.1, constraints=(c("rack", "MAX_PER", "2"),))
                            for i in range(5)])
    assert Counter(a.offer.attributes["rack"] for a in result.assignments) == {"r1": 2, "r2": 2}
    assert len(result.unmatched) == 1
    result = match(offers, [req("t", cpus=0.1, constraints=(c("rack", "CLUSTER", "r2"),))])
    assert result.assignments[0].offer.hostname == "h1"


offer_specs = st.lists(
    st.tuples(
        st.integers(1, 40).map(lambda n: n / 10),  # cpus
        st.integers(0, 4096),  # mem
        st.integers(0, 20),  # ports
        st.sampled_from(["h0", "h1", "h2", "h3"]),
    ),
    min_size=1, max_size=6,
)
request_specs = st.lists(
    st.tuples(st.integers(1, 20).map(lambda n: n / 10), st.integers(0, 1024),
              st.integers(0, 5), st.booleans()),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(offer_specs, request_specs)
def test_never_overcommits_and_unique_holds(
    offers_spec: list[tuple[float, int, int, str]],
    requests_spec: list[tuple[float, int, int, bool]],
) -> None:
    offers = [
        Offer.parse(offer_json(f"o{i}", host, cpus=cpus, mem=mem,
                               ports=[(1000, 1000 + p - 1)] if p else []))
        for i, (cpus, mem, p, host) in enumerate(offers_spec)
    ]
    unique = (c("hostname", "UNIQUE"),)
    requests = [
        req(f"t{i}", group="u" if uniq else "free", cpus=cpus, mem=mem, ports=p,
            constraints=unique if uniq else ())
        for i, (cpus, mem, p, uniq) in enumerate(requests_spec)
    ]
    result = match(offers, requests)
    assert len(result.assignments) + len(result.unmatched) == len(requests)
    for offer in offers:
        placed = result.by_offer.get(offer.id, [])
        used = Counter[str]()
        ports: list[int] = []
        for a in placed:
            for r in a.resources:
                if r["type"] == "SCALAR":
                    used[r["name"]] += round(r["scalar"]["value"] * 1000)
                else:
                    ports += [p for rg in r["ranges"]["range"]
                              for p in range(rg["begin"], rg["end"] + 1)]
            assert sorted(a.ports) == sorted(
                p for r in a.resources if r["type"] == "RANGES"
                for rg in r["ranges"]["range"] for p in range(rg["begin"], rg["end"] + 1))
            assert round(sum(r["scalar"]["value"] for r in a.resources
                             if r["name"] == "cpus") * 1000) == round(a.request.cpus * 1000)
        assert used["cpus"] <= round(offer.total("cpus") * 1000)
        assert used["mem"] <= round(offer.total("mem") * 1000)
        assert len(ports) == len(set(ports)) <= offer.port_count()
    unique_hosts = [a.offer.hostname for a in result.assignments if a.request.group == "u"]
    assert len(unique_hosts) == len(set(unique_hosts))
    # First fit: a request left unmatched could not have gone on an offer left untouched.
    for left in result.unmatched:
        for o in result.unused:
            fits = (o.total("cpus") >= left.cpus and o.total("mem") >= left.mem
                    and o.port_count() >= left.ports)
            allowed = left.group != "u" or o.hostname not in unique_hosts
            assert not (fits and allowed)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=8), st.integers(1, 20))
def test_group_by_with_count_stays_even(zones: list[str], n: int) -> None:
    distinct = sorted(set(zones))
    offers = [Offer.parse(offer_json(f"o{i}", f"h{i}", cpus=100, attributes={"zone": z}))
              for i, z in enumerate(zones)]
    cons = (c("zone", "GROUP_BY", str(len(distinct))),)
    result = match(offers, [req(f"t{i}", cpus=0.1, constraints=cons) for i in range(n)])
    assert not result.unmatched
    counts = Counter(a.offer.attributes["zone"] for a in result.assignments)
    per_zone = [counts.get(z, 0) for z in distinct]
    assert max(per_zone) - min(per_zone) <= 1
