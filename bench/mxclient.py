"""The bench's SMTP client, in a process of its own (see
:func:`bench.bench_mx.send_from_client`): sends, then prints one JSON line.

``python -m bench.mxclient HOST PORT COUNT one|each MESSAGE_FILE FIRST``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import cast

from bench.bench_mx import MODES, Mode, send_messages


def main(argv: list[str]) -> None:
    host, port, count, mode, message, first = argv
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    template = Path(message).read_bytes()
    sent = send_messages(host, int(port), int(count), cast(Mode, mode), template, first=int(first))
    print(
        json.dumps(
            {"accepted": sent.accepted, "seconds": sent.seconds, "client_cpu": sent.client_cpu}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
