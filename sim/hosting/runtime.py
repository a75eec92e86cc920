"""The Python API: start a topology and experiment with it.

::

    import sim
    topo = sim.load_topology("topologies/home-isp.yaml")
    with sim.start(topo) as lab:
        print(lab.dig("laptop", "qq.example", "MX").answers)
        print(lab.connect("laptop", "mx.qq.example", 25).outcome)   # blocked

Works from plain scripts and from Jupyter: the lab's event loop runs in its
own thread, so these calls block only until the experiment is done.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sim import argcheck, statedir
from sim.clock import parse_duration
from sim.experiments import Connect, ConnectResult, Dig, DigResult, Experiment, ExperimentResult
from sim.experiments.params import from_args
from sim.hosting.backend import BACKENDS as BACKEND_CLASSES
from sim.hosting.backend import Backend, backend_class, check_hostable
from sim.labhelpers import LabHelpers
from sim.net.api import Endpoint
from sim.topology.model import FirewallRule, Topology
from sim.trace import Trace, presented

if TYPE_CHECKING:
    from sim.experiments.read import ReadResult
    from sim.experiments.send import SendResult
    from sim.services.maildir import StoredMessage

__all__ = ["BACKENDS", "Lab", "start"]

BACKENDS = tuple(BACKEND_CLASSES)


class Lab(LabHelpers):
    """A running topology. Use as a context manager, or call :meth:`stop`.

    ::

        with sim.start("home-isp") as lab:
            lab                                   # in a notebook: the node map
            lab.commands("mx-qq")                 # what lab.control can change there
            result = lab.send("laptop", "bob@qq.example", via="smtp-isp",
                              user="alice@home.example", password="secret")
    """

    def __init__(self, backend: Backend, *, owns_state: bool) -> None:
        self.backend = backend
        self._owns_state = owns_state
        self._stopped = False

    @property
    def topology(self) -> Topology:
        """The running topology: what the services see (the relays' DKIM keys
        published) with the firewall rules changed since start.

        >>> [n.name for n in lab.topology.hosts()]
        ['laptop', 'ns', 'mx-qq', 'smtp-isp']
        """
        return self.backend.topology

    # -- experiments --------------------------------------------------------

    def run(self, node: str, experiment: Experiment) -> ExperimentResult:
        """Run any experiment on ``node`` (what :meth:`dig`, :meth:`send`... do).

        >>> lab.run("laptop", Dig(name="qq.example", type="MX"))
        """
        self.check_node(node)
        return self.backend.run(node, experiment)

    def dig(self, node: str, name: str, rtype: str = "A") -> DigResult:
        """Ask the lab resolver from ``node``, like ``dig NAME TYPE`` there.

        >>> lab.dig("laptop", "qq.example", "MX").answers
        [{'name': 'qq.example.', 'type': 'MX', 'ttl': 300, 'data': '10 mx.qq.example.'}]
        """
        argcheck.not_a_router(self.topology, node)
        argcheck.dns_name(name)
        result = self.run(node, from_args(Dig, {"name": name, "type": argcheck.dns_type(rtype)}))
        assert isinstance(result, DigResult)
        return result

    def connect(self, node: str, host: str, port: int) -> ConnectResult:
        """Open a TCP connection from ``node`` to ``host:port`` and read the banner.

        >>> lab.connect("laptop", "mx.qq.example", 25).outcome   # the ISP drops port 25
        'blocked'
        """
        argcheck.not_a_router(self.topology, node)
        argcheck.host(host)
        result = self.run(node, from_args(Connect, {"host": host, "port": argcheck.port(port)}))
        assert isinstance(result, ConnectResult)
        return result

    def send(
        self,
        node: str,
        to: str | list[str],
        *,
        mail_from: str | None = None,
        from_header: str | None = None,
        via: str = "direct",
        server: str | None = None,
        user: str | None = None,
        password: str | None = None,
        subject: str | None = None,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        port: int | None = None,
        settle: bool = False,
        tls: str | None = None,
        helo: str | None = None,
        message: str | None = None,
    ) -> SendResult:
        """Send one message from ``node``.

        ``via="direct"``: the node looks up the recipient's MX and connects to
        port 25 itself. ``via=NODE``: it submits to that node's submission
        service (587, STARTTLS, AUTH ``user``/``password``) and the relay
        there carries it on. ``server=NODE`` (or a lab address), with a
        direct send: connect to that MX on port 25 without looking up the MX
        records, as spammers do with a backup MX. The result says what became of it (delivered,
        junk, rejected, deferred, bounced, blocked) with the stage, the reply,
        the checks and the whole trace. ``settle=True`` advances lab time
        until the relay's queue has finished with the message. ``tls``
        overrides TLS on the first hop: ``none``, ``opportunistic``,
        ``required`` (STARTTLS) or ``implicit`` (TLS from the first byte).
        ``message`` sends a whole RFC 5322 message as it is (then leave out
        ``from_header``, ``subject``, ``body`` and ``headers``).
        Parameters left out take :class:`~sim.experiments.send.Send`'s defaults.

        >>> r = lab.send("laptop", "bob@qq.example", mail_from="alice@home.example",
        ...              via="smtp-isp", user="alice@home.example", password="secret")
        >>> r.outcome, r.checks["dmarc"]
        ('delivered', 'pass')
        """
        # The keyword arguments are Send's parameters, by name.
        args = {k: v for k, v in locals().items() if k not in ("self", "node")}
        self.check_node(node)
        self.check_via(via)
        argcheck.not_a_router(self.topology, node)
        for rcpt in [to] if isinstance(to, str) else list(to):
            argcheck.mail_address(rcpt, what="recipient")
        if mail_from:
            argcheck.mail_address(mail_from, what="mail_from")
        if via != "direct":
            argcheck.host(via, what="via")
        if server is not None:
            argcheck.host(server, what="server")
            if not argcheck.is_ipv4(server):
                self.check_node(server, "server")
        if port is not None:
            args["port"] = argcheck.port(port)
        from sim.experiments.send import Send, SendResult

        result = self.run(node, from_args(Send, args))
        assert isinstance(result, SendResult)
        return result

    def read(
        self,
        node: str,
        user: str,
        password: str,
        *,
        via: str,
        protocol: str = "imap",
        folder: str = "INBOX",
        tls: bool = True,
        port: int | None = None,
        peek: bool = False,
    ) -> ReadResult:
        """Read ``folder`` of a mailbox from ``node``, as a mail client would.

        ``via`` is the mailbox host (a node running the mailbox service, an
        address, or a host name in the lab DNS). ``protocol`` is ``imap``
        (143 with STARTTLS; 993 with implicit TLS) or ``pop3`` (110 with
        STLS; 995); ``tls=False`` skips STARTTLS to show the server refusing
        a clear-text password. Reading marks messages read (new/ → cur/,
        flag ``S``) unless ``peek``. The result lists the messages (uid,
        subject, from, size, flags, headers) or says where it failed, with
        the whole dialogue in its trace.

        >>> lab.read("laptop", "bob", "secret", via="imap-host").messages
        """
        # The keyword arguments are Read's parameters, by name.
        args = {k: v for k, v in locals().items() if k not in ("self", "node")}
        self.check_node(node)
        argcheck.not_a_router(self.topology, node)
        argcheck.host(via, what="via")
        if port is not None:
            args["port"] = argcheck.port(port)
        from sim.experiments.read import Read, ReadResult

        result = self.run(node, from_args(Read, args))
        assert isinstance(result, ReadResult)
        return result

    def mailbox(self, address: str, folder: str = "INBOX") -> list[StoredMessage]:
        """Messages stored for ``address`` (``user@domain``) in ``folder``
        (``INBOX`` or ``Junk``), oldest first, read from the MX's Maildir.

        >>> [m.subject for m in lab.mailbox("bob@qq.example", "Junk")]
        """
        from sim.experiments.send import mailbox_of

        return mailbox_of(self.topology, self.state_dir, address, folder)

    def queues(self) -> dict[str, list[dict[str, Any]]]:
        """Every relay's queue entries, by node.

        >>> lab.queues()["smtp-isp"][0]["next_attempt"]
        """
        out: dict[str, list[dict[str, Any]]] = {}
        for node in self.topology.hosts():
            if node.services.relay is not None:
                # A Postfix node's relay is Postfix: its queue, in lab time.
                service = "postfix" if node.services.postfix is not None else "relay"
                out[node.name] = list(self.control(node.name, service, "queue")["entries"])
        return out

    def settle(self, limit: str | float = "8d", *, poll: float = 0.05) -> float:
        """Let every relay finish: wait for due attempts and jump lab time to
        the next one until all queues are empty (bounces delivered too) or
        ``limit`` lab time has been added. Returns the lab seconds added.

        >>> lab.settle("9h")    # retries over 9 hours of lab time, in a second or two
        """
        budget = parse_duration(limit)
        added = 0.0
        idle_polls = 0
        while True:
            entries = [e for q in self.queues().values() for e in q if not e.get("held")]
            if not entries and not self._reports_due():
                return added
            if not entries:
                # A DMARC reporting period has ended (RFC 9990): its reports
                # are about to enter a relay's queue; wait for them.
                idle_polls += 1
                if idle_polls * poll > 60:
                    return added
                time.sleep(poll)
                continue
            now = self.now()
            due = min(float(e["next_attempt"]) for e in entries)
            if due > now + 1:
                step = due - now + 1
                if added + step > budget:
                    return added
                self.backend.advance(step)
                added += step
                idle_polls = 0
            else:
                # An attempt is due or under way: give it real time to finish.
                idle_polls += 1
                if idle_polls * poll > 60:  # a minute of real time without progress
                    return added
                time.sleep(poll)

    def _reports_due(self) -> bool:
        """Whether an MX's DMARC reports are due or being mailed now."""
        now = self.now()
        for node in self.topology.hosts():
            mx = node.services.mx
            if mx is None or mx.dmarc_reports is None:
                continue
            found = self.control(node.name, "mx", "status").get("dmarc_reports") or {}
            if found.get("busy") or float(found.get("due", now + 1)) <= now:
                return True
        return False

    # -- the lab ------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """Where queues, mailboxes and the lab CA live.

        >>> lab.state_dir / "tls" / "ca.pem"
        """
        return self.backend.state_dir

    def endpoints(self) -> list[Endpoint]:
        """Every service endpoint: node, service, lab address (and on the
        local backend the loopback address a real client can use).

        >>> [(e.node, e.service, e.lab) for e in lab.endpoints()][:2]
        """
        return self.backend.endpoints()

    def control(self, node: str, service: str, command: str, **args: Any) -> dict[str, Any]:
        """Change a running service: ``command`` with its arguments;
        :meth:`commands` lists them. Names are checked, with suggestions.

        >>> lab.control("mx-qq", "mx", "down")              # an outage
        >>> lab.control("ns", "dns", "add", zone="hosting.example", text="vps A 192.0.2.131")
        """
        self.check_control(node, service, command)
        return self.backend.control(node, service, command, **args)

    def set_firewall(
        self, router: str, rules: list[FirewallRule] | tuple[FirewallRule, ...]
    ) -> None:
        """Replace ``router``'s firewall rules while the lab runs.

        >>> lab.set_firewall("isp", [])    # the ISP lets port 25 out after all
        """
        self.check_node(router, "router")
        self.backend.set_firewall(router, tuple(rules))

    def firewall(self, router: str) -> tuple[FirewallRule, ...]:
        """``router``'s current rules.

        >>> [str(rule) for rule in lab.firewall("isp")]
        """
        self.check_node(router, "router")
        return self.topology.node(router).firewall

    def now(self) -> float:
        """Lab time (seconds since start).

        >>> lab.now()
        """
        return self.backend.now()

    def advance(self, duration: str | float) -> None:
        """Jump lab time forward (``"30m"``, ``"2h"`` or seconds).

        >>> lab.advance("30m")
        """
        self.backend.advance(parse_duration(duration))

    def trace(self) -> Trace:
        """Every event since the lab started (the latest, when very many).

        >>> lab.trace().of_kind("check")[-1].summary
        """
        return self.backend.log()

    def stop(self) -> None:
        """Stop every service and the network (a ``with`` block does it).

        >>> lab.stop()
        """
        if self._stopped:
            return
        self._stopped = True
        try:
            self.backend.stop()
        finally:
            if self._owns_state:
                shutil.rmtree(self.backend.state_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return str(presented("lab_repr")(self))

    def _repr_html_(self) -> str:
        return str(presented("lab_html")(self))

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # A notebook that forgets stop() must not leave a thread serving.
        if not getattr(self, "_stopped", True):
            with contextlib.suppress(Exception):
                self.stop()


def start(
    topology: Topology | str | Path,
    backend: str = "local",
    *,
    state_dir: str | Path | None = None,
    as_node: str | None = None,
    time_scale: float | None = None,
) -> Lab:
    """Realise ``topology`` on a backend and start every service.

    ``state_dir`` keeps queues and mailboxes (a temporary directory, removed
    at stop, when not given). ``as_node``: which node real programs on this
    machine speak for (local backend). ``time_scale`` overrides the topology's.
    ``topology`` is a loaded topology, a file, or a name (``"home-isp"``:
    found in ``topologies/`` from here, the parent directory, or the package).

    >>> with sim.start("home-isp") as lab:
    ...     lab.connect("laptop", "mx.qq.example", 25).outcome
    'blocked'
    """
    if not isinstance(topology, Topology):
        from sim.discover import find_topology
        from sim.topology import load_topology

        topology = load_topology(find_topology(topology))
    cls = backend_class(backend)  # an unknown backend: one line, before anything is made
    check_hostable(topology, backend)  # a service this backend cannot run: the same
    if as_node is not None:
        from sim.labhelpers import check_node_name

        check_node_name(topology, as_node, "as_node")
    # Checked before anything is created; a temporary one carries its owner,
    # so that `maillab clean` can remove it after a SIGKILL (sim/statedir.py).
    owns_state = state_dir is None
    path = statedir.create_temp() if state_dir is None else statedir.prepare(state_dir)
    try:
        impl = cls(topology, path, as_node=as_node, time_scale=time_scale)
    except BaseException:
        if owns_state:
            shutil.rmtree(path, ignore_errors=True)
        raise
    lab = Lab(impl, owns_state=owns_state)
    try:
        impl.start()
    except BaseException:
        lab.stop()
        raise
    return lab
