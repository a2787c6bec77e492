"""Operator visibility (issue 13): `GET /status` on the bridge's admin port, and
`python -m tools.bridge status --url URL [--url URL ...]` printing one table for one or
several instances.

Where: a separate port, `--admin-listen HOST:PORT`, plain HTTP and loopback only (the config
refuses any other host). Not the OICP listen port: that one admits only clients whose
certificate Hubject's CA signed (`--client-ca`), which an operator does not have, and adding the
operator's CA there would let the operator's certificate call RemoteStart too. Loopback keeps
the admin port off the network: read it on the host, or through an SSH tunnel. It is read-only
and carries no card UIDs, no secrets.

Query (for large fleets: the whole document of 100 000 charge points is ~26 MB and takes ~1 s
to build): `?state=offline` (online|offline|unknown) and `?cp=ID` (repeatable) keep only those
rows; totals always count every charge point.

The document (JSON), per instance:
  instance_id, share_group, ts (epoch s), started (epoch s), mqtt {connected, subscribed},
  commands {sent, matched, foreign, unmatched, bad, pending} (tools.bridge.commands),
  totals {online, offline, unknown, dead_letters},
  charge_points [{cp_id, state, since, since_exact, EvseIDs, boot, born_at, outbox, last_cdr,
                  cdrs, dead_letters}] (tools.bridge.registry.Registry.charge_points)

Every instance knows every charge point's availability (births and availability reach all of
them), but CDRs and dead letters are counted by the instance that handled them (work topics are
shared): the command merges the documents of all the instances it is given (sums of the
counts, the latest CDR, the availability change seen last).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from aiohttp import web

STATUS_PATH = "/status"
FETCH_TIMEOUT_S = 5.0


def document(bridge, state: str | None = None, cps_wanted: list[str] | None = None) -> dict:
    """The status document of one running `tools.bridge.app.Bridge`; rows only of charge
    points in `state` and/or named in `cps_wanted` when given."""
    cps = bridge.registry.charge_points()
    totals = {"online": 0, "offline": 0, "unknown": 0, "dead_letters": 0}
    for c in cps:
        totals[c["state"]] = totals.get(c["state"], 0) + 1
        totals["dead_letters"] += c["dead_letters"]
    if state:
        cps = [c for c in cps if c["state"] == state]
    if cps_wanted:
        wanted = set(cps_wanted)
        cps = [c for c in cps if c["cp_id"] in wanted]
    commands = dict(bridge.commands.counts, pending=bridge.commands.pending())
    return {"instance_id": bridge.cfg.instance_id, "share_group": bridge.cfg.share_group,
            "ts": round(time.time(), 3), "started": bridge.started,
            "mqtt": {"connected": bridge.link.client is not None,
                     "subscribed": bridge.link.subscribed.is_set()},
            "commands": commands, "totals": totals, "charge_points": cps}


class AdminServer:
    """The admin HTTP server: GET /status, nothing else."""

    def __init__(self, bridge, host: str, port: int):
        self.bridge = bridge
        self.host = host
        self.port = port
        self.runner: web.AppRunner | None = None
        self.url: str | None = None

    async def _status(self, request: web.Request) -> web.Response:
        state = request.query.get("state")
        doc = document(self.bridge, state, request.query.getall("cp", None))
        return web.json_response(doc,
                                 dumps=lambda o: json.dumps(o, separators=(",", ":")))

    async def start(self) -> str:
        """Listen; returns the base URL (with the real port when 0 was asked)."""
        app = web.Application()
        app.router.add_get(STATUS_PATH, self._status)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        port = self.runner.addresses[0][1]
        host = self.host if ":" not in self.host else "[" + self.host + "]"
        self.url = "http://{}:{}".format(host, port)
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


# -- merging several instances' documents ---------------------------------------------------------
def merge(docs: list[dict]) -> list[dict]:
    """One row per charge point across instances' documents: availability from the instance
    that saw the latest change (an exact time preferred when they agree), counts summed,
    last_cdr the latest, outbox from the latest birth."""
    by_cp: dict[str, list[dict]] = {}
    for doc in docs:
        for row in doc.get("charge_points", []):
            by_cp.setdefault(row["cp_id"], []).append(row)
    out = []
    for cp in sorted(by_cp):
        rows = by_cp[cp]
        newest = max(rows, key=lambda r: r.get("since") or 0)
        same = [r for r in rows if r["state"] == newest["state"] and r.get("since")]
        exact = [r for r in same if r.get("since_exact")]
        best = min(exact or same or [newest], key=lambda r: r.get("since") or 0)
        born = max(rows, key=lambda r: r.get("born_at") or 0)
        cdrs = [r["last_cdr"] for r in rows if r.get("last_cdr")]
        out.append({"cp_id": cp, "state": newest["state"], "since": best.get("since"),
                    "since_exact": bool(best.get("since_exact")),
                    "EvseIDs": born.get("EvseIDs", []), "outbox": born.get("outbox"),
                    "last_cdr": max(cdrs) if cdrs else None,
                    "cdrs": sum(r.get("cdrs", 0) for r in rows),
                    "dead_letters": sum(r.get("dead_letters", 0) for r in rows)})
    return out


def _when(ts: float | None, exact: bool = True) -> str:
    if not ts:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))
    return text if exact else "<=" + text


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table (one line per charge point)."""
    head = ("CHARGE POINT", "STATE", "SINCE", "EVSES", "OUTBOX", "LAST CDR", "CDRS", "DEAD")
    lines = [head]
    for r in rows:
        lines.append((r["cp_id"], r["state"], _when(r["since"], r["since_exact"]),
                      str(len(r["EvseIDs"])),
                      "?" if r["outbox"] is None else str(r["outbox"]),
                      _when(r["last_cdr"]), str(r["cdrs"]), str(r["dead_letters"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def fetch(url: str, timeout_s: float = FETCH_TIMEOUT_S, query: str = "") -> dict:
    """GET <url>/status[?query] (`url` may already end in /status)."""
    full = url if url.rstrip("/").endswith(STATUS_PATH) else url.rstrip("/") + STATUS_PATH
    if query:
        full += "?" + query
    with urllib.request.urlopen(full, timeout=timeout_s) as r:
        return json.loads(r.read())


def _instance_line(doc: dict) -> str:
    mqtt = "connected" if doc["mqtt"]["connected"] else "DISCONNECTED"
    c = doc["commands"]
    return ("instance {}: mqtt {}, share group {}, up since {}, commands pending {}, replies "
            "matched {} foreign {} unmatched {}".format(
                doc["instance_id"], mqtt, doc.get("share_group") or "-",
                _when(doc.get("started")), c["pending"], c["matched"], c["foreign"],
                c["unmatched"]))


def main(argv: list[str] | None = None, out=None) -> int:
    """`python -m tools.bridge status`: 0 when every instance answered, 1 otherwise."""
    out = out or sys.stdout
    p = argparse.ArgumentParser(
        prog="python -m tools.bridge status",
        description="Charge points as the bridge instances see them (their --admin-listen)")
    p.add_argument("--url", action="append", required=True,
                   help="an instance's admin URL, e.g. http://127.0.0.1:8081 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the merged rows as JSON")
    p.add_argument("--timeout", type=float, default=FETCH_TIMEOUT_S, help="seconds per URL")
    p.add_argument("--state", choices=("online", "offline", "unknown"),
                   help="only charge points in this state")
    p.add_argument("--cp", action="append", help="only this charge point (repeatable)")
    args = p.parse_args(argv)
    query = urllib.parse.urlencode([("state", args.state)] * bool(args.state)
                                   + [("cp", c) for c in args.cp or []])
    docs, failed = [], 0
    for url in args.url:
        try:
            docs.append(fetch(url, args.timeout, query))
        except (urllib.error.URLError, OSError, ValueError) as e:
            failed += 1
            print("{}: no status ({})".format(url, e), file=sys.stderr)
    rows = merge(docs)
    if args.json:
        out.write(json.dumps({"instances": [d["instance_id"] for d in docs],
                              "charge_points": rows}) + "\n")
    else:
        for doc in docs:
            out.write(_instance_line(doc) + "\n")
        out.write(table(rows) + "\n")
    return 1 if failed else 0
