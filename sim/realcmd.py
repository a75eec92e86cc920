"""``maillab realconfig``: the Postfix and Dovecot configuration a node gets.

A topology with ``postfix: {}`` / ``dovecot: {}`` nodes is realised with the
real software on the mininet backend (docs/postfix.md). This command shows,
without starting anything (no root needed), what main.cf, master.cf and
dovecot.conf the node's instances will read, each line beside the topology
field it came from: the student edits the topology and sees the Postfix
configuration follow.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["cmd_realconfig", "register"]


def realconfig(topology: Any, node_name: str) -> dict[str, Any]:
    """The generated files and their lines' sources for ``node_name``."""
    from sim.clireport import UsageError
    from sim.services.dovecotconf import dovecot_config
    from sim.services.postfixconf import postfix_config

    node = topology.node(node_name)
    services = node.services
    if services.postfix is None and services.dovecot is None:
        raise UsageError(
            f"maillab realconfig: {node_name} runs neither postfix nor dovecot "
            "(add `postfix: {}` or `dovecot: {}` to its services)"
        )
    assert node.ip is not None
    address = node.ip.ip
    # Certificates are issued by the lab CA when the lab starts.
    cert, key, ca = "STATE/tls/HOSTNAME.pem", "STATE/tls/HOSTNAME.key", "STATE/tls/ca.pem"
    files: dict[str, str] = {}
    settings: list[dict[str, str]] = []
    if services.postfix is not None:
        addresses = {n.name: n.ip.ip for n in topology.hosts() if n.ip is not None}
        conf = postfix_config(
            topology,
            node,
            address,
            dovecot=services.dovecot is not None,
            ca_file=ca,
            cert_file=cert,
            key_file=key,
            node_addresses=addresses,
        )
        files.update({f"/etc/postfix/{k}": v for k, v in conf.files().items()})
        settings += [s.to_json() for s in (*conf.main, *conf.master)]
    if services.dovecot is not None:
        dconf = dovecot_config(node, address, cert_file=cert, key_file=key)
        files["/etc/dovecot/dovecot.conf"] = "".join(f"{s.text}\n" for s in dconf.main)
        settings += [s.to_json() for s in dconf.main]
    return {"node": node_name, "files": files, "settings": settings}


def render(shown: dict[str, Any]) -> str:
    """Each file's lines, with the topology field they came from."""
    out: list[str] = []
    by_file: dict[str, list[dict[str, str]]] = {}
    for setting in shown["settings"]:
        by_file.setdefault(setting["file"], []).append(setting)
    for name, lines in by_file.items():
        out.append(f"# {shown['node']}: {name}")
        for line in lines:
            text = line["text"]
            first, *rest = text.splitlines()
            out.append(f"{first:<60} # {line['source']}")
            out.extend(rest)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def cmd_realconfig(args: argparse.Namespace) -> int:
    import sim
    from sim import argcheck

    topology = sim.load_topology(args.topology)
    argcheck.node(topology, args.node, what="NODE", hosts_only=True)
    shown = realconfig(topology, args.node)
    if args.json:
        print(json.dumps(shown, ensure_ascii=False), flush=True)
    else:
        print(render(shown), end="")
    return 0


def register(sub: Any) -> None:
    """Add ``maillab realconfig`` to the CLI (called by :func:`sim.cli.build_parser`)."""
    p = sub.add_parser(
        "realconfig",
        help="show the Postfix/Dovecot configuration a node gets",
        description="Print main.cf, master.cf and dovecot.conf as generated for a node "
        "with `postfix: {}` or `dovecot: {}`, each line beside the topology field it came "
        "from; nothing is started.",
    )
    p.add_argument("topology", metavar="TOPOLOGY", help="a topology file")
    p.add_argument("node", metavar="NODE", help="a host running postfix or dovecot")
    p.add_argument("--json", action="store_true", help="print the files and sources as JSON")
    p.set_defaults(func=cmd_realconfig)
