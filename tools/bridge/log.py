"""The bridge's stdout: one JSON object per line.

`{"event": "oicp", ...}` once per OICP call in either direction (operation, direction,
SessionID, EvseID, StatusCode, HTTP status, latency_ms, ...); `{"event": "ready", ...}` once
listening and subscribed; `{"event": "error"|"warning"|"mqtt", ...}` otherwise. No secrets ever
reach it (no passwords, keys, PINs); card UIDs and EvcoIDs only masked to their last 4
characters (tools.bridge.oicp.mask), which `oicp_call` enforces for the fields it is given.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from tools.bridge.oicp import masked_ident


class Log:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.lines: list[dict] = []  # kept for in-process tests (bounded)

    def emit(self, event: str, **fields) -> dict:
        rec = {"event": event, "ts": round(time.time(), 3)}
        rec.update((k, v) for k, v in fields.items() if v is not None)
        self.stream.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.stream.flush()
        self.lines.append(rec)
        if len(self.lines) > 1000:
            del self.lines[:500]
        return rec

    def oicp_call(self, operation: str, direction: str, *, status_code: dict | None,
                  http_status: int | None, latency_ms: float, identification: object = None,
                  **fields) -> dict:
        """One OICP call: `direction` "out" (we called Hubject) or "in" (Hubject called us).
        `identification` is logged masked; StatusCode as its Code."""
        code = status_code.get("Code") if isinstance(status_code, dict) else None
        return self.emit("oicp", operation=operation, direction=direction,
                         StatusCode=code, http_status=http_status, latency_ms=latency_ms,
                         Identification=masked_ident(identification), **fields)
