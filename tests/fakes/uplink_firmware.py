"""A stand-in firmware for the simulator's uplink tests (tests/test_sim_uplink.py).

Speaks the process contract only (firmware/app.py): prints `ready` (with `boots`, counted in
FLASH/boots, and `cp_id` / `uplink` as its config.json says), then reads commands:

    status      {"ev": "snapshot", "outbox": depth, "asked": how many `status` so far}
    add | ack   the outbox depth goes up / down by one; `add` prints a `notification`
    say_outbox  from now on print {"ev": "outbox", "depth"} itself on every change
    connect     open TCP to config uplink.url (host:port), send b"ping", wait (2 s) for an
                answer: `uplink` {connected: true, got} or {connected: false, reason}
    send TEXT   send TEXT on that connection; `recv` waits (2 s) for bytes: `net_data`
    reset       exit 75 (firmware.uplink.RESET_EXIT), as after a backend reset
    reset_early (as an argument --reset-before-ready) exit 75 before `ready`
    quit        exit 0
"""

import json
import os
import socket
import sys

RESET_EXIT = 75


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv):
    flash = argv[argv.index("--flash") + 1]
    path = os.path.join(flash, "boots")
    boots = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(boots))
    with open(os.path.join(flash, "config.json")) as f:
        cfg = json.load(f)
    if "--reset-before-ready" in argv:
        return RESET_EXIT
    up = cfg.get("uplink") or {}
    out({"ev": "ready", "boot_ms": 1, "boots": boots, "cp_id": cfg.get("cp_id"),
         "uplink": up})
    depth = 0
    asked = 0
    say = False
    conn = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        if cmd == "quit":
            return 0
        if cmd == "reset":
            return RESET_EXIT
        if cmd == "status":
            asked += 1
            out({"ev": "snapshot", "outbox": depth, "asked": asked})
        elif cmd in ("add", "ack"):
            depth = depth + 1 if cmd == "add" else max(0, depth - 1)
            if cmd == "add":
                out({"ev": "notification", "type": "Progress", "session_id": "s"})
            if say:
                out({"ev": "outbox", "depth": depth})
        elif cmd == "say_outbox":
            say = True
            out({"ev": "outbox", "depth": depth})
        elif cmd == "connect":
            host, port = up["url"].split("://", 1)[1].rsplit(":", 1)
            try:
                conn = socket.create_connection((host, int(port)), timeout=2)
                conn.sendall(b"ping")
                out({"ev": "uplink", "connected": True, "got": conn.recv(64).decode()})
            except OSError as e:
                out({"ev": "uplink", "connected": False, "reason": repr(e)})
        elif cmd == "send" and conn is not None:
            try:
                conn.sendall(words[1].encode())
            except OSError as e:
                out({"ev": "uplink", "connected": False, "reason": repr(e)})
        elif cmd == "recv" and conn is not None:
            try:
                got = conn.recv(64)
                out({"ev": "net_data", "got": got.decode()} if got else
                    {"ev": "uplink", "connected": False, "reason": "closed"})
            except OSError as e:
                out({"ev": "uplink", "connected": False, "reason": repr(e)})
        else:
            out({"ev": "error", "kind": "command", "message": line.strip()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
