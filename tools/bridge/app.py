"""The bridge assembled: registry + MQTT link + Hubject client + authorizer + remote endpoints
+ the durable path (CDRs, notifications, EVSE status and data: tools/bridge/durable.py), one
asyncio loop. `Bridge.start()` returns once the HTTP server listens and the MQTT
subscriptions are in place with the retained births and availability already taken in; then
it prints the `ready` line (with the real port when the flag said 0).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from tools.bridge import cdrstore, deadletter, durable, mqttlink
from tools.bridge import site as site_file
from tools.bridge.authorize import Authorizer
from tools.bridge.budget import Budgets
from tools.bridge.commands import Commands
from tools.bridge.config import Config
from tools.bridge.hubject import HubjectClient, client_context
from tools.bridge.log import Log
from tools.bridge.registry import Registry
from tools.bridge.server import BASE, RemoteService
from tools.bridge.status import AdminServer


def without_userinfo(url: str) -> str:
    """The URL without `user:password@` (never logged)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def server_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """TLS for the endpoints Hubject calls; with `client_ca` a client certificate signed by it
    is required (Hubject presents its own)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


DURABLE_KINDS = {mqttlink.CDR: durable.KIND_CDR, mqttlink.NOTIFICATION: durable.KIND_NOTIFICATION,
                 mqttlink.STATUS: durable.KIND_STATUS}


class Bridge:
    def __init__(self, cfg: Config, log: Log | None = None):
        self.cfg = cfg
        self.log = log or Log()
        self.registry = Registry()
        settings = mqttlink.BrokerSettings(cfg.broker, cfg.broker_user, cfg.broker_password,
                                           cfg.broker_ca)
        settings.endpoint()  # ValueError for a bad url, before anything starts
        self.link = mqttlink.MqttLink(settings, "mpevse-bridge-" + cfg.instance_id,
                                      self._handle, self.log, cfg.share_group)
        self.commands = Commands(cfg.instance_id, self.link.publish)
        self.registry.listeners.append(self.commands.on_availability)
        self.registry.live = self.link.subscribed.is_set  # retained burst: "since" inexact
        self.started = round(time.time(), 3)  # epoch s, for GET /status
        self.admin = AdminServer(self, cfg.admin_host, cfg.admin_port) if cfg.admin_host \
            else None
        tls = None
        if cfg.hubject_url.startswith("https:"):
            tls = client_context(cfg.client_cert, cfg.client_key, cfg.hubject_ca)
        self.hubject = HubjectClient(cfg.hubject_url, tls, Budgets(cfg.budgets),
                                     cfg.hubject_timeout_ms, cfg.hubject_connections)
        self.authorizer = Authorizer(cfg.operator_id, self.registry, self.hubject,
                                     self.link.publish, self.log)
        self.remote = RemoteService(cfg.operator_id, self.registry, self.commands, self.log,
                                    cfg.reply_timeout_s)
        self.site = site_file.load(cfg.site, cfg.operator_id) if cfg.site else None
        sender = durable.Sender(self.hubject, self.log)
        self.durable = durable.Durable(
            cfg.operator_id, sender, self.site,
            cdrstore.CdrStore(cfg.cdr_store) if cfg.cdr_store else None,
            deadletter.DeadLetters(cfg.dead_letter), self.link.publish, self.log,
            self.registry)
        self.evse_data = durable.EvseData(cfg.operator_id, self.site, self.registry, sender,
                                          self.log) if self.site is not None else None
        self.durable.statuses = durable.StatusPusher(cfg.operator_id, self.durable, sender,
                                                     self.evse_data, self.registry)
        self.runner: web.AppRunner | None = None
        self.listen_url: str | None = None
        self._mqtt_task: asyncio.Task | None = None
        self._pushers: list[asyncio.Task] = []

    def _handle(self, kind: str, cp: str, payload: bytes):
        if kind == mqttlink.BIRTH:
            why = self.registry.on_birth(cp, payload)
            if why:
                self.log.emit("warning", cp_id=cp, message=why)
            elif self.evse_data is not None:
                self.evse_data.wake.set()  # new or changed EVSEs: update Hubject's data
            return None
        if kind == mqttlink.AVAILABILITY:
            self.registry.on_availability(cp, payload)
            return None
        if kind == mqttlink.HEALTH:
            why = self.registry.on_health(cp, payload)
            if why:
                self.log.emit("warning", cp_id=cp, message=why)
            return None
        if kind == mqttlink.REPLY:
            self.commands.on_reply(cp, payload)
            return None
        if kind in DURABLE_KINDS:
            self.durable.on_message(DURABLE_KINDS[kind], cp, payload)
            return None
        return self.authorizer.on_request(cp, payload)

    async def start(self, ready_timeout_s: float | None = None) -> dict:
        """Listen, connect, subscribe; returns (and prints) the ready record."""
        cfg = self.cfg
        await self.hubject.start()
        tls = None
        if cfg.server_cert:
            tls = server_context(cfg.server_cert, cfg.server_key or "", cfg.client_ca)
        self.runner = web.AppRunner(self.remote.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.listen_host, cfg.listen_port, ssl_context=tls)
        await site.start()
        port = self.runner.addresses[0][1]  # the real port when 0 was asked
        host = cfg.listen_host if ":" not in cfg.listen_host else "[" + cfg.listen_host + "]"
        self.listen_url = "{}://{}:{}".format("https" if tls else "http", host, port)
        admin_url = await self.admin.start() if self.admin is not None else None
        self._mqtt_task = asyncio.ensure_future(self.link.run())
        await asyncio.wait_for(self.link.subscribed.wait(), ready_timeout_s)
        # the retained births are in: EVSE data (fullLoad first), then statuses
        if self.evse_data is not None:
            self._pushers.append(asyncio.ensure_future(self.evse_data.run()))
        assert self.durable.statuses is not None
        self._pushers.append(asyncio.ensure_future(self.durable.statuses.run()))
        return self.log.emit(
            "ready", listen=self.listen_url, base=self.listen_url + BASE,
            operator_id=cfg.operator_id, instance_id=cfg.instance_id,
            broker=without_userinfo(cfg.broker), hubject_url=without_userinfo(cfg.hubject_url),
            mutual_tls_in=bool(cfg.client_ca), admin=admin_url,
            subscriptions=[f for f, _ in mqttlink.subscriptions(cfg.share_group)],
            charge_points=len(self.registry.evses))

    async def stop(self) -> None:
        for task in self._pushers:
            task.cancel()
        await asyncio.gather(*self._pushers, return_exceptions=True)
        self._pushers = []
        await self.durable.close()
        if self._mqtt_task is not None:
            self._mqtt_task.cancel()
            await asyncio.gather(self._mqtt_task, return_exceptions=True)
            self._mqtt_task = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.admin is not None:
            await self.admin.stop()
        await self.hubject.close()
