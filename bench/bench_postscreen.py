"""What postscreen and dovecot_set cost a lab (issue 18).

Run as root, with the real software installed (``make system``)::

    python bench/bench_postscreen.py            # 3 rounds, medians
    python bench/bench_postscreen.py --json

The parity lab (tests/data/postfix-parity.yaml) with Postfix and Dovecot on
qq.example's MX only, whose ``dnsbl: reject`` check puts postscreen on port
25. Measured, in real seconds:

* ``first``: a send from a client postscreen has not seen (it waits
  ``postscreen_greet_wait``, 1 s, for the pregreet test and the DNSBL
  answer, then passes the connection to smtpd);
* ``again``: the next send from that client once its verdict is cached;
* ``listed``: a send from a listed client (refused at RCPT; a failed test
  is not remembered, so it waits every time);
* ``own``: the same first send to maillab's own MX, for reference;
* ``dovecot_set``: one ``dovecot set`` control command (doveconf check,
  doveadm reload, until Dovecot logs the reload).

The machine's load is printed beside the figures: on a shared 2-core
machine it moves them.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import sim  # noqa: E402
from bench import rootbench  # noqa: E402

#: Clients of the parity lab: not listed (a fresh one per round) and listed.
CLEAN = ("noptr", "liar", "spoofer")
LISTED = "spammer"


def _timed(lab: sim.Lab, node: str) -> float:
    begin = time.monotonic()
    lab.send(node, to="bob@qq.example", mail_from=f"{node}@home.example")
    return time.monotonic() - begin


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def measure(rounds: int) -> dict[str, Any]:
    from postfix_support import mail_software_missing, parity_topology, with_real

    missing = mail_software_missing()
    if missing is not None:
        return {"skipped": missing}
    rounds = min(rounds, len(CLEAN))
    out: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    figures: dict[str, list[float]] = {k: [] for k in ("first", "again", "listed", "dovecot_set")}
    real = with_real(parity_topology(), ("mx-qq",))
    with (
        tempfile.TemporaryDirectory(prefix="maillab-bench-") as state,
        sim.start(real, backend="mininet", state_dir=state) as lab,
    ):
        for node in CLEAN[:rounds]:
            figures["first"].append(_timed(lab, node))
            figures["again"].append(_timed(lab, node))
            figures["listed"].append(_timed(lab, LISTED))
            begin = time.monotonic()
            value = "no" if len(figures["dovecot_set"]) % 2 == 0 else "yes"
            lab.control("mx-qq", "dovecot", "set", key="disable_plaintext_auth", value=value)
            figures["dovecot_set"].append(time.monotonic() - begin)
    with (
        tempfile.TemporaryDirectory(prefix="maillab-bench-") as state,
        sim.start(parity_topology(), backend="mininet", state_dir=state) as lab,
    ):
        own = [_timed(lab, node) for node in CLEAN[:rounds]]
    out.update({name: _median(values) for name, values in figures.items()})
    out["own"] = _median(own)
    out["load_after"] = os.getloadavg()[0]
    return out


def _sentence(result: dict[str, Any], rounds: int) -> str:
    return (
        f"send through postscreen, medians: new client {result['first']:.2f} s, "
        f"known {result['again']:.2f} s, listed {result['listed']:.2f} s "
        f"(maillab's MX: {result['own']:.2f} s); dovecot set "
        f"{result['dovecot_set'] * 1000:.0f} ms; "
        f"load {result['load_before']:.1f} → {result['load_after']:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else []
    return rootbench.run("bench_postscreen", __doc__, measure, _sentence, args)


if __name__ == "__main__":
    raise SystemExit(main())
