"""Who a client is, on loopback (LoopbackRegistry) and across namespaces
(ConnTags): TCP and UDP port numbers are separate spaces, so a UDP socket
holding a live TCP client's port number must neither replace nor remove that
client's entry (the verdict race of issue 19)."""

from __future__ import annotations

import socket
import weakref
from ipaddress import IPv4Address
from pathlib import Path

from sim.net.backlog import DEFAULT_BACKLOG, listen_backlog
from sim.net.registry import ClientEntry, LoopbackRegistry
from sim.net.shared import ConnTags

RELAY = ClientEntry("relay", IPv4Address("192.0.2.25"), "t-relay")
DNS = ClientEntry("mx", IPv4Address("203.0.113.25"), "t-dns")


def test_a_udp_query_on_a_tcp_clients_port_number_leaves_the_client_alone() -> None:
    registry = LoopbackRegistry()
    with socket.socket() as tcp:
        entry = ClientEntry(RELAY.node, RELAY.address, RELAY.trace_id, weakref.ref(tcp))
        registry.register_client("tcp", ("127.0.0.1", 40000), entry)
        registry.register_client("udp", ("127.0.0.1", 40000), DNS)
        assert registry.client("tcp", ("127.0.0.1", 40000)) is entry
        assert registry.client("udp", ("127.0.0.1", 40000)) is DNS
        registry.forget_client("udp", ("127.0.0.1", 40000))
        assert registry.client("tcp", ("127.0.0.1", 40000)) is entry
        assert registry.client("udp", ("127.0.0.1", 40000)) is None


def test_conn_tags_keep_tcp_and_udp_apart(tmp_path: Path) -> None:
    tags = ConnTags(tmp_path)
    tags.tag("192.0.2.25", 40000, "t-relay")
    tags.tag("192.0.2.25", 40000, "t-dns", "udp")
    tags.tag("192.0.2.25", 40000, None, "udp")  # the query is over
    assert tags.lookup("192.0.2.25", 40000) == "t-relay"
    assert tags.lookup("192.0.2.25", 40000, "udp") is None


def test_the_backlog_is_the_kernel_limit(tmp_path: Path) -> None:
    limit = tmp_path / "somaxconn"
    limit.write_text("8192\n")
    assert listen_backlog(limit) == 8192
    assert listen_backlog(tmp_path / "missing") == DEFAULT_BACKLOG
    junk = tmp_path / "junk"
    junk.write_text("junk")
    assert listen_backlog(junk) == DEFAULT_BACKLOG
