"""A stand-in firmware process for runner tests: speaks the stdout/stdin contract only.

It prints `ready`, answers `status`/`heap`, reports `clear N` as a state event, exits 0 on
`quit`, and on `die` exits 3 after writing to stderr (to test the runner's death report).
It persists a boot counter in FLASH/boots so tests can see a restart reuse the flash dir.
"""

import json
import os
import sys


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
    out({"ev": "ready", "boot_ms": 1, "boots": boots, "evses": len(cfg["evses"])})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            return 0
        if words[0] == "die":
            sys.stderr.write("fake firmware: told to die\n")
            return 3
        if words[0] == "status":
            out({"ev": "snapshot", "argv": argv})
        elif words[0] == "heap":
            out({"ev": "heap", "alloc": 1000})
        elif words[0] == "clear" and len(words) == 2:
            out({"ev": "state", "evse": int(words[1]), "state": "idle"})
        elif words[0] == "garble":
            sys.stdout.write("not json\n")
            sys.stdout.flush()
        else:
            out({"ev": "error", "kind": "command", "message": line.strip()})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
