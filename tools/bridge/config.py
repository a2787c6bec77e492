"""The bridge's settings: command-line flags, optionally a JSON config file with the same keys
(`broker-ca` or `broker_ca` alike); a flag given on the command line wins over the file.

    --broker URL            mqtt://HOST[:PORT] or mqtts://HOST[:PORT]
    --broker-ca FILE        CA for mqtts://
    --broker-user U --broker-password P
    --operator-id ID        e.g. DE*SIM; every EvseID must lie under it
    --hubject-url URL       base up to and including /api/oicp; https:// (plain http:// only
                            toward a loopback host: the bridge refuses to start otherwise)
    --client-cert FILE --client-key FILE   our certificate toward Hubject (mutual TLS)
    --hubject-ca FILE       Hubject's root AND intermediate CA in one file
    --listen HOST:PORT      where Hubject calls us (port 0: any free port; the ready line says)
    --server-cert FILE --server-key FILE   serve https; --client-ca FILE: require a client
                            certificate signed by it (Hubject's); plain http only on loopback
    --instance-id ID        names this instance (MQTT client id, command ids)
    --budget OP=N/min       per-operation calls per minute (repeatable), e.g.
                            AuthorizeStart=200/min (defaults: Hubject's AUP, tools.bridge.budget)
    --hubject-timeout-ms N  longest wait for Hubject (default 8000; also bounded by each
                            request's ttl_ms)
    --hubject-connections N  keep-alive HTTPS connections to Hubject, at most (default 64,
                            1..1000): the most calls in flight at once, so with Hubject
                            answering in L ms the bridge calls at most N * 1000 / L per s
    --reply-timeout-s S     longest wait for a charge point's reply to a remote command
                            (default 8, at most 10)
    --share-group NAME      subscribe work topics as $share/NAME/... (several instances)
    --site FILE             the site file for eRoamingPushEvseData (tools/bridge/site.py);
                            without it no EVSE data is pushed (statuses are, as they come)
    --cdr-store FILE        the operator's CDR store: CDRs of sessions without a Hubject
                            SessionID, JSON lines, exactly once (tools/bridge/cdrstore.py);
                            without it such a CDR is only logged (`local_cdr` line)
    --dead-letter FILE      durable messages refused for good, JSON lines
                            (tools/bridge/deadletter.py); without it only logged
    --admin-listen HOST:PORT  GET /status for the operator (tools/bridge/status.py): plain
                            HTTP, loopback addresses only (port 0: any free port)
    --config FILE           JSON object with any of the keys above
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import dataclass, field

from tools.bridge import oicp
from tools.bridge.budget import parse_budget
from tools.bridge.hubject import check_url, is_loopback
from tools.bridge.server import MAX_REPLY_TIMEOUT_S, REPLY_TIMEOUT_S

DEFAULT_HUBJECT_TIMEOUT_MS = 8000
# 64 calls in flight: with Hubject answering in ~200 ms that is ~320 calls/s, past the AUP's
# per-operation budgets (tools/bridge/budget.py); aiohttp's own default (100) would also do.
DEFAULT_HUBJECT_CONNECTIONS = 64

KEYS = ("broker", "broker_ca", "broker_user", "broker_password", "operator_id", "hubject_url",
        "client_cert", "client_key", "hubject_ca", "listen", "server_cert", "server_key",
        "client_ca", "instance_id", "budget", "hubject_timeout_ms", "hubject_connections",
        "reply_timeout_s", "share_group", "admin_listen", "site", "cdr_store", "dead_letter")


class ConfigError(ValueError):
    pass


@dataclass
class Config:
    broker: str
    operator_id: str
    hubject_url: str
    listen_host: str
    listen_port: int
    broker_ca: str | None = None
    broker_user: str | None = None
    broker_password: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    hubject_ca: str | None = None
    server_cert: str | None = None
    server_key: str | None = None
    client_ca: str | None = None
    instance_id: str = "bridge"
    budgets: dict[str, int] = field(default_factory=dict)
    hubject_timeout_ms: int = DEFAULT_HUBJECT_TIMEOUT_MS
    hubject_connections: int = DEFAULT_HUBJECT_CONNECTIONS  # --hubject-connections
    reply_timeout_s: float = REPLY_TIMEOUT_S
    share_group: str | None = None
    admin_host: str | None = None  # --admin-listen: loopback only
    admin_port: int = 0
    site: str | None = None  # --site FILE (tools/bridge/site.py)
    cdr_store: str | None = None  # --cdr-store FILE (tools/bridge/cdrstore.py)
    dead_letter: str | None = None  # --dead-letter FILE (tools/bridge/deadletter.py)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.bridge",
                                description="OICP 2.3 bridge: charge points (MQTT) <-> Hubject")
    for key in KEYS:
        flag = "--" + key.replace("_", "-")
        if key == "budget":
            p.add_argument(flag, action="append", metavar="OP=N/min")
        elif key in ("hubject_timeout_ms", "hubject_connections"):
            p.add_argument(flag, type=int)
        elif key == "reply_timeout_s":
            p.add_argument(flag, type=float)
        else:
            p.add_argument(flag)
    p.add_argument("--config", metavar="FILE")
    return p


def _split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError("listen {!r}: need HOST:PORT".format(text))
    try:
        n = int(port)
    except ValueError:
        raise ConfigError("listen {!r}: port must be a number".format(text)) from None
    if not 0 <= n <= 65535:
        raise ConfigError("listen {!r}: port out of range".format(text))
    return host.strip("[]"), n


def load(argv: list[str] | None = None) -> Config:
    """Parse flags (+ config file) into a checked Config; ConfigError says what is wrong."""
    args = parser().parse_args(argv)
    values: dict = {}
    if args.config:
        try:
            with open(args.config) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise ConfigError("config {}: {}".format(args.config, e)) from None
        if not isinstance(data, dict):
            raise ConfigError("config {}: need a JSON object".format(args.config))
        for k, v in data.items():
            key = k.replace("-", "_")
            if key not in KEYS:
                raise ConfigError("config {}: unknown key {!r}".format(args.config, k))
            values[key] = v
    for key in KEYS:
        v = getattr(args, key)
        if v is not None:
            values[key] = v
    return build(values)


def build(values: dict) -> Config:
    for key in ("broker", "operator_id", "hubject_url", "listen"):
        if not values.get(key):
            raise ConfigError("--{} is required".format(key.replace("_", "-")))
    op = values["operator_id"]
    if not isinstance(op, str) or not oicp.OPERATOR_RE.match(op):
        raise ConfigError("operator id {!r}: not an OperatorIDType (e.g. DE*SIM)".format(op))
    try:
        url = check_url(values["hubject_url"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if url.startswith("https:"):
        if not (values.get("client_cert") and values.get("client_key")):
            raise ConfigError("https toward Hubject needs --client-cert and --client-key "
                              "(mutual TLS)")
        if not values.get("hubject_ca"):
            raise ConfigError("https toward Hubject needs --hubject-ca (root + intermediate)")
    if bool(values.get("broker_user")) != bool(values.get("broker_password")):
        raise ConfigError("--broker-user and --broker-password go together")
    if str(values["broker"]).startswith("mqtts:") and not values.get("broker_ca"):
        raise ConfigError("mqtts:// needs --broker-ca")
    host, port = _split_listen(str(values["listen"]))
    if bool(values.get("server_cert")) != bool(values.get("server_key")):
        raise ConfigError("--server-cert and --server-key go together")
    if values.get("client_ca") and not values.get("server_cert"):
        raise ConfigError("--client-ca needs --server-cert/--server-key (https)")
    if not values.get("server_cert") and not is_loopback(host):
        raise ConfigError("listen {}: plain http only on a loopback address; give "
                          "--server-cert/--server-key".format(host))
    budgets: dict[str, int] = {}
    raw_budget = values.get("budget") or []
    if isinstance(raw_budget, dict):
        raw_budget = ["{}={}".format(k, v) for k, v in raw_budget.items()]
    for item in raw_budget:
        try:
            op_name, n = parse_budget(str(item))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        budgets[op_name] = n
    timeout_ms = int(values.get("hubject_timeout_ms") or DEFAULT_HUBJECT_TIMEOUT_MS)
    if not 100 <= timeout_ms <= 60000:
        raise ConfigError("--hubject-timeout-ms must be 100..60000")
    connections = values.get("hubject_connections")
    connections = DEFAULT_HUBJECT_CONNECTIONS if connections is None else int(connections)
    if not 1 <= connections <= 1000:
        raise ConfigError("--hubject-connections must be 1..1000")
    reply_s = float(values.get("reply_timeout_s") or REPLY_TIMEOUT_S)
    if not 0 < reply_s <= MAX_REPLY_TIMEOUT_S:
        raise ConfigError("--reply-timeout-s must be in (0, {}]".format(MAX_REPLY_TIMEOUT_S))
    admin_host, admin_port = None, 0
    if values.get("admin_listen"):
        admin_host, admin_port = _split_listen(str(values["admin_listen"]))
        if not is_loopback(admin_host):
            raise ConfigError("admin-listen {}: loopback addresses only (plain HTTP; read it "
                              "on the host or through a tunnel)".format(admin_host))
    instance = values.get("instance_id") or "{}-{}".format(
        socket.gethostname().split(".")[0][:20], os.getpid())
    if not all(c.isalnum() or c in "_-" for c in instance) or len(instance) > 32:
        raise ConfigError("instance id {!r}: 1-32 of A-Z a-z 0-9 _ -".format(instance))
    for key in ("broker_ca", "client_cert", "client_key", "hubject_ca", "server_cert",
                "server_key", "client_ca", "site"):
        path = values.get(key)
        if path and not os.path.isfile(path):
            raise ConfigError("--{} {}: no such file".format(key.replace("_", "-"), path))
    return Config(
        broker=values["broker"], operator_id=op, hubject_url=url, listen_host=host,
        listen_port=port, broker_ca=values.get("broker_ca"),
        broker_user=values.get("broker_user"), broker_password=values.get("broker_password"),
        client_cert=values.get("client_cert"), client_key=values.get("client_key"),
        hubject_ca=values.get("hubject_ca"), server_cert=values.get("server_cert"),
        server_key=values.get("server_key"), client_ca=values.get("client_ca"),
        instance_id=instance, budgets=budgets, hubject_timeout_ms=timeout_ms,
        hubject_connections=connections,
        reply_timeout_s=reply_s, share_group=values.get("share_group"),
        admin_host=admin_host, admin_port=admin_port, site=values.get("site"),
        cdr_store=values.get("cdr_store"), dead_letter=values.get("dead_letter"))
