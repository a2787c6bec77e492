"""The operator's own CDR store (`--cdr-store FILE`): CDRs of sessions Hubject never issued a
SessionID for (local-list customers, free vend, offline starts never post-authorized) are not
sent to Hubject (it would answer 400, §6) but appended here, one JSON object per line:

    {"id": "cdr-<local id>", "cp_id": ..., "stored_at": epoch seconds, "record": {...the
     charge point's CDR as received, OICP field names, UTC times...}}

Exactly once by `id`: the file is the record of what was stored. Each append first takes an
exclusive lock (fcntl.flock) and reads whatever other writers (another bridge instance on the
same host) appended since this one last looked, so an id already present is not written again;
the line is flushed and fsync'ed before the charge point is acknowledged. A restarted bridge
reads every id back at start. A torn last line (a crash mid-write) is skipped when reading and
the next append starts on a fresh line.
"""

from __future__ import annotations

import fcntl
import json
import os
import time


class CdrStore:
    def __init__(self, path: str):
        self.path = path
        self.ids: set[str] = set()
        self._offset = 0  # bytes of the file already read into `ids`
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)
        os.close(fd)  # fails early (exit 2) for a path that cannot be written
        with open(self.path, "rb") as f:
            self._read_new(f)

    def _read_new(self, f) -> None:
        f.seek(self._offset)
        data = f.read()
        end = data.rfind(b"\n") + 1  # a torn last line is read again once completed
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn line left by a crash: its CDR was never acknowledged
            if isinstance(rec, dict) and isinstance(rec.get("id"), str):
                self.ids.add(rec["id"])
        self._offset += end

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self.ids

    def add(self, msg_id: str, cp: str, record: dict) -> bool:
        """Append the CDR unless its id is stored already; True if written now, False for a
        duplicate. OSError if the file cannot be written (the caller retries later)."""
        if msg_id in self.ids:
            return False
        line = json.dumps({"id": msg_id, "cp_id": cp, "stored_at": round(time.time(), 3),
                           "record": record}, separators=(",", ":")).encode() + b"\n"
        with open(self.path, "a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                self._read_new(f)
                if msg_id in self.ids:
                    return False
                size = f.seek(0, os.SEEK_END)
                if size > self._offset:  # a torn line at the end: start on a new one
                    line = b"\n" + line
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
                self._offset = size + len(line)
                self.ids.add(msg_id)
                return True
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
