"""The bridge's MQTT side: one aiomqtt connection as the backend account (`bridge` in
tools/mosquitto/acl: reads mpevse/+/#, writes mpevse/+/down/#), its subscriptions, the dispatch
of what arrives, and reconnection with back-off.

aiomqtt: an asyncio client (paho-mqtt underneath, the same MQTT code the tests' charge points
use), so MQTT, the HTTP server and the HTTP client share one event loop without threads.

Subscriptions (topics spelled by firmware.contract only). Two groups:
- every instance needs ALL of them: births, availability and health (the registry), and
  up/reply (the reply goes to whoever sent the command; command ids name the instance, others
  ignore it);
- work that ONE instance should do: up/authorize. `share_group` (issue 13) subscribes these as
  `$share/<group>/...`, so the broker hands each request to one instance only.
An instance that dies takes with it only what the broker had already handed to it (clean
session: nothing is queued for it afterwards; the rest of the group gets everything new): an
authorize request in flight there goes unanswered and the charge point's deadline applies its
offline policy; a durable message stays unacknowledged in the charge point's outbox and is
published again after RESEND_MS (firmware/uplink.py). tests/test_bridge_multi.py shows it.
Durable messages (up/notification, up/cdr, status/<n>) are work too: one instance handles
each (tools/bridge/durable.py) and acknowledges it on down/ack once Hubject or the operator's
CDR store has it. Retained statuses reach every member of a share group (Mosquitto).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiomqtt

from firmware import contract as C

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
KEEPALIVE_S = 30
PUBLISH_TIMEOUT_S = 5.0
# paho leaves Nagle on: our PUBACK for a request and the answer's PUBLISH right after it would
# wait for the broker's delayed ACK (~40 ms per answer). Mosquitto ships set_tcp_nodelay too.
NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

BIRTH = "birth"
AVAILABILITY = "availability"
HEALTH = "health"
REPLY = "reply"
AUTHORIZE = "authorize"
NOTIFICATION = "notification"
CDR = "cdr"
STATUS = "status"


def subscriptions(share_group: str | None = None) -> list[tuple[str, str]]:
    """[(topic filter, kind)] in subscribe order; work topics prefixed `$share/<group>/`."""
    every = [(C.birth_topic("+"), BIRTH), (C.availability_topic("+"), AVAILABILITY),
             (C.health_topic("+"), HEALTH), (C.up_topic("+", C.UP_REPLY), REPLY)]
    work = [(C.up_topic("+", C.UP_AUTHORIZE), AUTHORIZE),
            (C.up_topic("+", C.UP_NOTIFICATION), NOTIFICATION),
            (C.up_topic("+", C.UP_CDR), CDR),
            (C.status_topic("+", "+"), STATUS)]
    if share_group:
        work = [("$share/{}/{}".format(share_group, f), k) for f, k in work]
    return every + work


def classify(topic: str) -> tuple[str, str] | None:
    """(kind, cp) of a topic this bridge subscribes to, else None."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != C.PREFIX:
        return None
    cp = parts[1]
    if topic == C.birth_topic(cp):
        return BIRTH, cp
    if topic == C.availability_topic(cp):
        return AVAILABILITY, cp
    if topic == C.health_topic(cp):
        return HEALTH, cp
    if topic == C.up_topic(cp, C.UP_REPLY):
        return REPLY, cp
    if topic == C.up_topic(cp, C.UP_AUTHORIZE):
        return AUTHORIZE, cp
    if topic == C.up_topic(cp, C.UP_NOTIFICATION):
        return NOTIFICATION, cp
    if topic == C.up_topic(cp, C.UP_CDR):
        return CDR, cp
    if len(parts) == 4 and parts[2] == "status" and parts[3]:
        return STATUS, cp
    return None


@dataclass
class BrokerSettings:
    url: str  # mqtt://HOST[:PORT] or mqtts://HOST[:PORT]
    user: str | None = None
    password: str | None = None
    ca: str | None = None  # CA file for mqtts://

    def endpoint(self) -> tuple[str, int, ssl.SSLContext | None]:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("broker url {!r}: need mqtt://HOST[:PORT] or mqtts://...".format(
                self.url))
        tls = parts.scheme == "mqtts"
        ctx = None
        if tls:
            ctx = ssl.create_default_context(cafile=self.ca)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return parts.hostname, parts.port or (8883 if tls else 1883), ctx


class LinkDown(ConnectionError):
    """Publishing while the broker connection is down (or it broke during the publish)."""


Handler = Callable[[str, str, bytes], Awaitable[None] | None]


class MqttLink:
    def __init__(self, settings: BrokerSettings, client_id: str, handle: Handler, log,
                 share_group: str | None = None):
        """`handle(kind, cp, payload)` is called for every message, in arrival order; a
        coroutine it returns runs as its own task (authorize requests run concurrently)."""
        self.settings = settings
        self.client_id = client_id
        self.handle = handle
        self.log = log
        self.share_group = share_group
        self.client: aiomqtt.Client | None = None
        self.subscribed = asyncio.Event()  # set once subscribed and retained messages handled
        self._tasks: set[asyncio.Task] = set()

    async def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, not retained; waits for PUBACK. LinkDown when not connected."""
        client = self.client
        if client is None:
            raise LinkDown("not connected to the broker")
        try:
            await client.publish(topic, payload, qos=C.QOS, retain=False,
                                 timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as e:
            raise LinkDown(str(e)) from e

    async def run(self) -> None:
        """Connect, subscribe, dispatch; reconnect with back-off until cancelled."""
        host, port, ctx = self.settings.endpoint()
        backoff = RECONNECT_MIN_S
        while True:
            try:
                async with aiomqtt.Client(
                        host, port, username=self.settings.user,
                        password=self.settings.password, identifier=self.client_id,
                        tls_context=ctx, keepalive=KEEPALIVE_S, clean_session=True,
                        protocol=aiomqtt.ProtocolVersion.V311,
                        socket_options=NODELAY) as client:
                    self.client = client
                    backoff = RECONNECT_MIN_S
                    await self._session(client)
            except aiomqtt.MqttError as e:
                self.log.emit("mqtt", connected=False, reason=str(e)[:200],
                              retry_s=backoff)
            finally:
                self.client = None
                self.subscribed.clear()
            await asyncio.sleep(backoff)  # reconnect back-off
            backoff = min(backoff * 2, RECONNECT_MAX_S)

    async def _session(self, client: aiomqtt.Client) -> None:
        for filt, _kind in subscriptions(self.share_group):
            await client.subscribe(filt, qos=C.QOS)
        self.log.emit("mqtt", connected=True, broker=urlsplit(self.settings.url).hostname)
        # Mosquitto sends a subscription's retained messages before it answers the next
        # SUBSCRIBE, so once the last SUBACK is in, every retained birth and availability is
        # queued: handle the queue before saying "subscribed".
        while len(client.messages):
            self._dispatch(await client.messages.__anext__())
        self.subscribed.set()
        async for message in client.messages:
            self._dispatch(message)

    def _dispatch(self, message: aiomqtt.Message) -> None:
        what = classify(message.topic.value)
        if what is None:
            return
        payload = message.payload if isinstance(message.payload, bytes) else \
            str(message.payload or "").encode()
        result = self.handle(what[0], what[1], payload)
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.emit("error", message="handler failed: {!r}".format(task.exception())[:300])
