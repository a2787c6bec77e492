"""The dead-letter file (`--dead-letter FILE`): durable messages that Hubject refused for good
(or that the pre-send checks refused) are parked here and acknowledged to the charge point, so
one bad message does not hold its outbox. One JSON object per line, appended and fsync'ed
before the acknowledgement:

    {"at": epoch seconds, "cp_id", "kind": "cdr"|"notification"|"evse_status", "id",
     "reason": why (text), "operation": the OICP operation,
     "message": the charge point's message as received,
     "body": the OICP body that was (or would have been) sent, or null,
     "answer": {"http_status", "StatusCode", "process_id", "response"} or null}

The operator inspects it, may correct a `message` (e.g. the times of a CDR dated by a wrong
clock) and re-sends with `python -m tools.bridge replay FILE [the bridge's flags]`
(tools/bridge/durable.py `replay`), which rebuilds each body from `message` and reports per
line what happened. Without --dead-letter the record goes to the log only (`error` line).
"""

from __future__ import annotations

import fcntl
import json
import os
import time


class DeadLetters:
    def __init__(self, path: str | None):
        self.path = path
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.close(fd)  # fails early (exit 2) for a path that cannot be written

    def park(self, cp: str, kind: str, msg: object, reason: str, operation: str,
             body: dict | None = None, answer: dict | None = None) -> dict:
        """Append one dead letter (when a file is configured); returns the record."""
        rec = {"at": round(time.time(), 3), "cp_id": cp, "kind": kind,
               "id": msg.get("id") if isinstance(msg, dict) else None, "reason": reason,
               "operation": operation, "message": msg, "body": body, "answer": answer}
        if self.path:
            line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
            with open(self.path, "ab") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                try:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return rec


def read(path: str) -> list[tuple[int, dict | None, str | None]]:
    """[(line number, record or None, problem or None)] of a dead-letter file."""
    out: list[tuple[int, dict | None, str | None]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                out.append((n, None, "not JSON: {}".format(e)))
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("message"), dict) \
                    or rec.get("kind") not in ("cdr", "notification", "evse_status"):
                out.append((n, None, "need an object with kind and message"))
                continue
            out.append((n, rec, None))
    return out
