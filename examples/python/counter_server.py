#!/usr/bin/env python3
"""A movable DVS service in Python: counts requests, and keeps its count when it moves.

Binds DVS_SLOT (or the slot given as argv[1]; a system slot, to receive requests) in DVS_DC, through
the daemon at DVS_SOCKET with the token in DVS_TOKEN_FILE (as `dvs run` starts it). Each request
``{op: "inc", key}`` gets the new count as its reply payload. Its state is ``{count, log}``, log
the last keys. Before a move the daemon asks for that state (the snapshot hook answers it as JSON);
the copy started on the target node finds it in ``restored`` and goes on counting from there. When
its endpoint moved away it exits 0.

Prints one JSON line once it serves: {"ready": true, "endpoint", "count", "restored", "migrated"}.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

from dvs_client import Client, DvsError  # noqa: E402

LOG_KEEP = 10


def main() -> int:
    client = Client(name="counter")
    slot = int(sys.argv[1]) if len(sys.argv) > 1 else client.env_slot
    if slot is None:
        print("counter_server: give a slot (argv[1] or DVS_SLOT)", file=sys.stderr)
        return 2
    p = client.bind(slot=slot, name="counter")
    state = {"count": 0, "log": []}
    if p.restored is not None:
        state = json.loads(p.restored.decode("utf-8"))
    p.on_snapshot(lambda: json.dumps(state).encode("utf-8"))
    print(json.dumps({"ready": True, "endpoint": p.endpoint, "count": state["count"], "restored": p.restored is not None, "migrated": p.migrated}), flush=True)
    while True:
        try:
            msg = p.receive_request()
        except DvsError as e:
            # A move fails the receive with EDVSSHUTDOWN first, then the daemon says where it went.
            if e.code == "EDVSSHUTDOWN" and client.wait_moved(p, 10.0):
                print(json.dumps({"moved": p.moved, "count": state["count"]}), flush=True)
                client.close()
                return 0
            raise
        req = msg.payload
        if not isinstance(req, dict) or req.get("op") != "inc":
            p.reply(msg.source, 1, {"error": "expected {op: 'inc', key}"})
            continue
        state["count"] += 1
        state["log"] = (state["log"] + [req.get("key")])[-LOG_KEEP:]
        p.reply(msg.source, 0, state["count"])


if __name__ == "__main__":
    sys.exit(main())
