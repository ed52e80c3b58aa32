"""One intrusion or several? The case's timed observations grouped into clusters of related activity.

    from ttpscope.analyze.intrusions import activity_clusters
    clusters = activity_clusters(case.observations, detections)
    clusters[0].hosts, clusters[0].first, clusters[0].last, clusters[0].observations

Two observations belong to one cluster when a chain of links joins them, and a link is either
- one entity (host, user, IP address or account, compared as :func:`ttpscope.analyze.entities.entity_key`
  does) seen in both, with no gap longer than ``entity_gap`` between its sightings; or
- activity close in time (``concurrent``) on hosts of one network domain (``ws1.corp.local`` and
  ``dc1.corp.local``; a host without a domain is compatible with any): one intruder's steps on several hosts
  need not share a user or an address in what the rules saw.

An observation's entities are its host and user and those of the rule hit it was built from (source IP,
destination IP, account). So a lab recorded over years, or logs of unrelated networks put in one folder,
come apart into clusters, while an intrusion that moves from host to host with one account stays one.
Untimed observations (report sentences) belong to no cluster: they describe the case as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable

from ttpscope.analyze.entities import entities_of, entity_key
from ttpscope.model import Detection, Observation

ENTITY_GAP = timedelta(days=7)  # an entity silent for longer than this starts a new line of activity
CONCURRENT = timedelta(hours=12)  # activity this close in one network domain is one line, shared entity or not
_FIELD_KIND = {"host": "host", "user": "user", "src_ip": "ip", "dst_ip": "ip", "account": "account"}


@dataclass
class Cluster:
    """A group of related timed observations."""

    observations: list[Observation]
    first: datetime
    last: datetime
    entities: dict[str, int] = field(default_factory=dict)  # node id -> observations naming it, most first

    def kind(self, kind: str) -> list[str]:
        """The display values of one entity kind (host, user, ip, account), most seen first."""
        return [node.split(":", 1)[1] for node in self.entities if node.startswith(kind + ":")]

    @property
    def hosts(self) -> list[str]:
        seen: dict[str, str] = {}
        for obs in self.observations:
            key = entity_key("host", obs.host)
            if key and key[0] not in seen:
                seen[key[0]] = key[1]
        order = list(self.entities)
        return [seen[k] for k in sorted(seen, key=lambda k: order.index(k) if k in order else len(order))]

    @property
    def hits(self) -> int:
        return sum(max(1, o.count) for o in self.observations)

    def techniques(self) -> list[str]:
        return sorted({o.technique_id for o in self.observations})


def _span(obs: Observation) -> tuple[datetime, datetime]:
    start = obs.first_seen or obs.time
    end = obs.last_seen or start
    return start, max(start, end)


def _domain(host: str | None) -> str | None:
    """The DNS domain of a host name (``corp.local`` of ``ws1.corp.local``), None for a bare name or an IP."""
    if not host or "." not in host or entity_key("ip", host):
        return None
    return host.split(".", 1)[1].lower()


def observation_entities(obs: Observation, hit: Detection | None) -> set[str]:
    """The entity node ids an observation names: its host and user, and its rule hit's entity fields."""
    out = set()
    for kind, value in (("host", obs.host), ("user", obs.user)):
        key = entity_key(kind, value)
        if key:
            out.add(key[0])
    said = (obs.evidence or {}).get("entity") if isinstance(obs.evidence, dict) else None
    if isinstance(said, dict) and said.get("kind") in _FIELD_KIND:
        key = entity_key(_FIELD_KIND[said["kind"]], said.get("value"))
        if key:
            out.add(key[0])
    if hit is not None:
        out.update(node for node, *_ in entities_of(hit))
    return out


def _hit_index(detections: Iterable[Detection]) -> dict[tuple[str, str], Detection]:
    return {(str(d.source), str(d.record)): d for d in detections if d.record is not None}


def activity_clusters(observations: Iterable[Observation], detections: Iterable[Detection] = (), *,
                      entity_gap: timedelta = ENTITY_GAP, concurrent: timedelta = CONCURRENT) -> list[Cluster]:
    """The timed observations in clusters of related activity (see the module docstring), the largest
    (most observations) first, ties by time."""
    timed = [o for o in observations if o.time is not None]
    if not timed:
        return []
    hits = _hit_index(detections)
    spans = [_span(o) for o in timed]
    ents = []
    for obs in timed:
        ev = obs.evidence if isinstance(obs.evidence, dict) else {}
        ents.append(observation_entities(obs, hits.get((str(ev.get("source")), str(ev.get("record"))))))
    parent = list(range(len(timed)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def chain(members: list[int], gap: timedelta) -> None:
        """Join members in time order while each starts within ``gap`` of the run's latest end."""
        members.sort(key=lambda i: spans[i][0])
        prev, end = None, None
        for i in members:
            if prev is not None and spans[i][0] - end <= gap:
                parent[find(i)] = find(prev)
                end = max(end, spans[i][1])
            else:
                end = spans[i][1]
            prev = i

    by_entity: dict[str, list[int]] = {}
    for i, nodes in enumerate(ents):
        for node in nodes or {"(none)"}:  # observations naming nothing chain by time among themselves
            by_entity.setdefault(node, []).append(i)
    for members in by_entity.values():
        chain(members, entity_gap)
    domains = [_domain(o.host) for o in timed]
    for domain in sorted({d for d in domains if d}) or [None]:
        chain([i for i, d in enumerate(domains) if d in (domain, None)], concurrent)

    groups: dict[int, list[int]] = {}
    for i in range(len(timed)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        counts: dict[str, int] = {}
        for i in members:
            for node in ents[i]:
                counts[node] = counts.get(node, 0) + 1
        out.append(Cluster(observations=[timed[i] for i in sorted(members, key=lambda i: spans[i][0])],
                           first=min(spans[i][0] for i in members), last=max(spans[i][1] for i in members),
                           entities=dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))))
    out.sort(key=lambda c: (-len(c.observations), c.first))
    return out


def cluster_row(cluster: Cluster, number: int) -> dict[str, Any]:
    """A cluster as the report shows it (no attribution: the section adds it)."""
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    return {"id": f"C{number}", "first": iso(cluster.first), "last": iso(cluster.last),
            "observations": len(cluster.observations), "hits": cluster.hits, "hosts": cluster.hosts[:20],
            "host_count": len(cluster.hosts), "users": cluster.kind("user")[:10], "ips": cluster.kind("ip")[:10],
            "accounts": cluster.kind("account")[:5], "techniques": cluster.techniques()}
