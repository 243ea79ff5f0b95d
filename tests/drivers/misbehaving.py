"""Drivers that break the protocol, for the tests: `python misbehaving.py hang|die|garbage|wrong-id`.
Each answers `init` properly (as the Simulation driver), then misbehaves on the first `reset`."""

from __future__ import annotations

import json
import sys
import time

HELLO = {"ok": True, "protocol": 1, "driver": "misbehaving", "implementation": "test",
         "supports": ["login", "logout", "connect", "disconnect", "advance"], "observes": [],
         "events": [], "state": {"status": "disconnected"}}


def main(how: str) -> int:
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "init":
            print(json.dumps({"id": command["id"], **HELLO}), flush=True)
            continue
        if how == "hang":
            time.sleep(3600)
        elif how == "die":
            print("driver: giving up", file=sys.stderr, flush=True)
            return 7
        elif how == "garbage":
            print("this is not JSON", flush=True)
        elif how == "wrong-id":
            print(json.dumps({"id": 999, "ok": True}), flush=True)
        time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
