"""The discoverable half of the running lab: names checked, commands listed,
the common edits as one call each.

:class:`LabHelpers` is a mixin of :class:`sim.hosting.runtime.Lab`; it needs only the
lab's ``topology`` and its ``control``. What it adds:

* name checks with suggestions, in the Python API's own words (``via``,
  ``node``), never the command line's flags::

      >>> lab.send("laptop", "bob@qq.example", via="smtp_isp")
      UnknownNode: via: no node named 'smtp_isp'; did you mean 'smtp-isp'?

* :meth:`~LabHelpers.commands`: what ``lab.control`` can do on a node;
* :meth:`~LabHelpers.set_record`, :meth:`~LabHelpers.set_check`,
  :meth:`~LabHelpers.set_policy`: replace a DNS record, change a receiving
  check's action, publish a domain's DMARC policy.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from sim.controls import COMMANDS, CommandList, commands_of
from sim.discover import did_you_mean, unknown
from sim.errors import ArgumentError, BackendError, NetworkError, ServiceError
from sim.topology.graph import OUTSIDE

if TYPE_CHECKING:
    from sim.topology.model import Node, Topology

__all__ = ["LabHelpers", "UnknownNode", "check_node_name", "txt_data"]

_SERVICE_KINDS = ("dns", "dnsbl", "mx", "submission", "relay", "mailbox", "postfix", "dovecot")


class UnknownNode(ArgumentError, NetworkError, BackendError):
    """A name that is no node of the topology: a bad argument
    (:class:`ArgumentError`, one line and exit 2 on the command line), and
    the kinds callers already catch: a :class:`BackendError` (the backend
    cannot run on it) and a :class:`NetworkError` (as ``send``'s ``via``
    always raised)."""


def check_node_name(topology: Topology, node: str, role: str = "node") -> Node:
    """``topology``'s node called ``node`` (``outside`` too: the neutral host
    the network adds outside every ISP); :class:`UnknownNode` with the
    closest names otherwise, ``role`` naming the argument."""
    for candidate in topology.nodes:
        if candidate.name == node:
            return candidate
    if node == OUTSIDE:
        from sim.topology.graph import build_network

        return build_network(topology).node(OUTSIDE)
    names = [n.name for n in topology.nodes] + [OUTSIDE]
    raise UnknownNode(f"{role}: {unknown('node named', node, names)}")


def _services(node: Node) -> list[str]:
    return list(node.services.names())


def txt_data(text: str) -> str:
    """``text`` as TXT record data: quoted, split into strings of at most 255
    bytes (RFC 1035 §3.3.14), unless it is quoted already."""
    if text.startswith('"'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    chunks = [escaped[i : i + 255] for i in range(0, len(escaped), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


class LabHelpers:
    """Mixed into :class:`sim.hosting.runtime.Lab` (see the module docstring)."""

    @property
    def topology(self) -> Topology:
        raise NotImplementedError  # Lab's

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        raise NotImplementedError  # Lab's

    # -- names ------------------------------------------------------------------

    def check_node(self, node: str, role: str = "node") -> Node:
        """The node called ``node``; :class:`NetworkError` with the closest
        names when there is none. ``role`` names the argument in the message.

        >>> lab.check_node("smtp_isp")
        UnknownNode: node: no node named 'smtp_isp'; did you mean 'smtp-isp'?
        """
        return check_node_name(self.topology, node, role)

    def check_via(self, via: str) -> None:
        """``via`` of :meth:`send`: ``"direct"``, a node, or a lab address.

        >>> lab.check_via("smtp-isp")
        """
        if via == "direct":
            return
        try:
            IPv4Address(via)
        except ValueError:
            self.check_node(via, "via")

    def check_control(self, node: str, service: str, command: str) -> None:
        """That ``node`` runs ``service`` and that it has ``command``.

        >>> lab.check_control("mx-qq", "mx", "dwn")
        ServiceError: mx on mx-qq: no control command 'dwn'; did you mean 'down'? [...]
        """
        found = self.check_node(node)
        running = _services(found)
        if service not in running:
            hint = did_you_mean(service, running)
            listed = ", ".join(running) or "none"
            raise ServiceError(f"{node} runs no {service!r} service{hint} (it runs: {listed})")
        names = [c.name for c in commands_of(service)]
        if names and command not in names:
            raise ServiceError(
                f"{service} on {node}: {unknown('control command', command, names)} "
                f"[lab.commands({node!r}, {service!r}) lists them with their arguments]"
            )

    # -- listing ------------------------------------------------------------------

    def commands(self, node: str | None = None, service: str | None = None) -> CommandList:
        """The control commands of ``node``'s services (or of one service),
        with their arguments and an example each.

        >>> lab.commands("mx-qq")            # in a notebook: a table
        >>> print(lab.commands("ns", "dns"))  # records, add, remove, replace_zone, flush
        """
        if node is None:
            kinds = [service] if service else list(_SERVICE_KINDS)
            chosen = [c for c in COMMANDS if c.service in kinds]
            return CommandList(service or "every service", tuple(chosen))
        running = _services(self.check_node(node))
        if service is not None and service not in running:
            hint = did_you_mean(service, running)
            raise ServiceError(
                f"{node} runs no {service!r} service{hint} (it runs: {', '.join(running)})"
            )
        kinds = [service] if service else running
        return CommandList(node, tuple(c for c in COMMANDS if c.service in kinds))

    # -- the common edits -------------------------------------------------------------

    def _dns_nodes(self, zone: str) -> list[str]:
        wanted = zone.rstrip(".").lower()
        nodes = [
            n.name
            for n in self.topology.nodes
            if n.services.dns is not None
            and wanted in (z.rstrip(".").lower() for z in n.services.dns.zones)
        ]
        if not nodes:
            zones = [z for n in self.topology.nodes if n.services.dns for z in n.services.dns.zones]
            raise ServiceError(f"set_record: {unknown('zone', zone, zones)}")
        return nodes

    def zone_of(self, name: str) -> str:
        """The lab zone ``name`` belongs to (the longest zone that ends it).

        >>> lab.zone_of("_dmarc.home.example")
        'home.example'
        """
        wanted = name.rstrip(".").lower()
        zones = sorted(
            {
                z.rstrip(".").lower()
                for n in self.topology.nodes
                if n.services.dns
                for z in n.services.dns.zones
            },
            key=len,
            reverse=True,
        )
        for zone in zones:
            if wanted == zone or wanted.endswith("." + zone):
                return zone
        raise ServiceError(f"{unknown('zone that holds', name, zones)}")

    def set_record(
        self,
        name: str,
        rtype: str,
        data: str | None,
        *,
        zone: str | None = None,
        ttl: int | None = None,
    ) -> dict[str, Any]:
        """Replace the ``rtype`` records of ``name`` with one record (``data``
        None: remove them). ``name`` is absolute (``"_dmarc.home.example"``)
        or relative to ``zone``; TXT data is quoted for you. Every node
        serving the zone gets the change; caches of the nodes forget it.

        >>> lab.set_record("home.example", "TXT", "v=spf1 a:smtp.home.example ~all")
        >>> lab.set_record("vps131", "A", "192.0.2.131", zone="hosting.example")
        """
        rtype = rtype.upper()
        the_zone = (zone or self.zone_of(name)).rstrip(".").lower()
        absolute = name.rstrip(".").lower()
        if zone is not None and not (absolute == the_zone or absolute.endswith("." + the_zone)):
            absolute = f"{absolute}.{the_zone}" if absolute != "@" else the_zone
        relative = "@" if absolute == the_zone else absolute[: -len(the_zone) - 1]
        out: dict[str, Any] = {}
        for node in self._dns_nodes(the_zone):
            try:
                removed = self.control(
                    node, "dns", "remove", zone=the_zone, name=relative, rtype=rtype
                )
            except ServiceError:
                if data is None:  # asked to remove what is not there: say what is
                    names = self._record_names(node, the_zone, rtype)
                    raise ServiceError(
                        f"set_record: {unknown(f'{rtype} record', absolute, names)}"
                    ) from None
                removed = {"removed": 0}  # a new record
            out = {"zone": the_zone, "name": relative, "removed": removed.get("removed", 0)}
            if data is not None:
                value = txt_data(data) if rtype == "TXT" else data
                line = " ".join(p for p in (relative, str(ttl) if ttl else "", rtype, value) if p)
                added = self.control(node, "dns", "add", zone=the_zone, text=line)
                out["added"] = added.get("added")
        return out

    def _record_names(self, node: str, zone: str, rtype: str) -> list[str]:
        lines = self.control(node, "dns", "records", zone=zone).get("records", [])
        names = []
        for line in lines:
            parts = str(line).split()
            if len(parts) >= 4 and rtype in parts[1:4]:
                names.append(parts[0].rstrip("."))
        return names

    def set_check(self, node: str, check: str, action: str) -> dict[str, Any]:
        """Set what failing ``check`` costs at ``node``'s MX: ``reject``,
        ``junk``, ``header``, ``policy`` (dmarc: the domain's policy decides)
        or ``off``.

        >>> lab.set_check("mx-qq", "spf", "header")   # note SPF only: DKIM may save DMARC
        """
        self.check_control(node, "mx", "set_check")
        from sim.services import checks as registry
        from sim.services.mx import ACTIONS

        CHECKS = registry.names()

        if check not in CHECKS:
            raise ServiceError(f"set_check: {unknown('check', check, CHECKS)}")
        if action not in (*ACTIONS, "off"):
            raise ServiceError(f"set_check: {unknown('action', action, (*ACTIONS, 'off'))}")
        return self.control(node, "mx", "set_check", check=check, action=action)

    def set_policy(self, domain: str, policy: str, **tags: str) -> dict[str, Any]:
        """Publish ``domain``'s DMARC policy (RFC 9989): ``none``,
        ``quarantine`` or ``reject``, with more tags if given (``adkim="s"``,
        ``sp="none"``, ``t="y"``...), at ``_dmarc.DOMAIN``.

        >>> lab.set_policy("home.example", "quarantine", adkim="s")
        """
        if policy not in ("none", "quarantine", "reject"):
            raise ServiceError(
                f"set_policy: {unknown('policy', policy, ('none', 'quarantine', 'reject'))}"
            )
        record = "; ".join(["v=DMARC1", f"p={policy}", *(f"{k}={v}" for k, v in tags.items())])
        return self.set_record(f"_dmarc.{domain.rstrip('.')}", "TXT", record)
