"""Load generator for the OICP bridge (issue 13, Measure): N simulated charge points speaking
the uplink contract (firmware/contract.py) over MQTT 3.1.1, in one asyncio process.

    python -m tools.loadgen --broker mqtt://127.0.0.1:1883 [--cps 1000] [--rate 500]
        [--duration 10] [--ttl-ms 10000] [--cdr-rate 0] [--operator-id DE*SIM]

Each charge point `CP<nnnn>` (user name = cp_id, password `--password-format`, default
`pw-{cp}`) has one connection with a retained last will b"offline" on its availability topic,
publishes its retained birth `{"cp_id", "EvseIDs": ["<op>*E<nnnn>*1"], "fw", "boot"}` and
availability b"online" (QoS 1, waiting for the PUBACKs), and subscribes to its own
`down/#`. Then `authorize_start` requests (QoS 1, not retained, a card UID of its own per charge
point, see `uid_of`) go out at the target rate, spread round-robin over the charge points in a
shuffled order; each down/authorize answer is matched to its request by `id` and the
end-to-end latency (publish written to the socket -> answer parsed) is recorded. Optionally
durable CDRs (`up/cdr`, id `cdr-<local id>`, the shape of firmware/session.py end_records) go
out at `--cdr-rate` and every id named in a `down/ack` is counted (once).

Why a codec of our own (this module, about 150 lines) and not paho or aiomqtt: the generator
shares two cores with the broker, the bridge and the Hubject simulator, so what it spends per
message is taken from the system under test. paho keeps a Client object, locks and a
per-packet Python state machine for every connection and needs its socket callbacks wired to
the loop by hand; aiomqtt adds tasks and a queue per client on top of paho. Here a connection
is an `asyncio.Protocol` (no task per connection): a received PUBLISH is parsed from the
buffer and handled in the same callback, its PUBACK written at once. It speaks only what a
charge point needs: CONNECT (will, user, password), SUBSCRIBE, PUBLISH QoS 0/1 both ways,
PUBACK, PINGREQ, DISCONNECT (CONNECT itself from tests/brokers.py).

Units: times in seconds unless named `_ms`; rates per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import struct
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from firmware import contract as C
from tests.brokers import connect_packet  # CONNECT with will, user, password (3.1.1)

CONNECT_BATCH = 100  # connections opened in parallel at start-up
KEEPALIVE_S = 300  # the shipped mosquitto.conf's max_keepalive
PING_EVERY_S = 120.0
IO_TIMEOUT_S = 15.0  # CONNACK, SUBACK, PUBACK of a retained message
TICK_S = 0.002  # the sender's pacing step

# MQTT 3.1.1 packet types (upper nibble of the fixed header)
CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14


# -- the codec ---------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    """MQTT's remaining length: 7 bits per byte, low group first, high bit = more."""
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def subscribe_packet(pid: int, topic_filter: str, qos: int = 1) -> bytes:
    return _packet((SUBSCRIBE << 4) | 0x02, struct.pack("!H", pid) + _str(topic_filter)
                   + bytes((qos,)))


def publish_packet(topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                   pid: int = 0) -> bytes:
    first = (PUBLISH << 4) | (qos << 1) | (1 if retain else 0)
    body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return _packet(first, body)


def puback_packet(pid: int) -> bytes:
    return bytes((PUBACK << 4, 2)) + struct.pack("!H", pid)


PINGREQ_PACKET = bytes((PINGREQ << 4, 0))
DISCONNECT_PACKET = bytes((DISCONNECT << 4, 0))


def split_packets(buf: bytearray) -> list[tuple[int, int, bytes]]:
    """Complete packets at the start of `buf` as (type, flags, body), removed from `buf`; an
    incomplete tail stays for the next read. ValueError for a malformed length."""
    out = []
    pos = 0
    n = len(buf)
    while n - pos >= 2:
        length = 0
        shift = 0
        i = pos + 1
        while True:
            if i >= n:
                del buf[:pos]
                return out
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise ValueError("MQTT remaining length over 4 bytes")
        if i + length > n:
            break
        first = buf[pos]
        out.append((first >> 4, first & 0x0F, bytes(buf[i:i + length])))
        pos = i + length
    del buf[:pos]
    return out


def parse_publish(flags: int, body: bytes) -> tuple[str, bytes, int, int]:
    """(topic, payload, qos, packet id or 0) of a PUBLISH body."""
    tlen = struct.unpack_from("!H", body)[0]
    topic = body[2:2 + tlen].decode()
    qos = (flags >> 1) & 3
    pos = 2 + tlen
    pid = 0
    if qos:
        pid = struct.unpack_from("!H", body, pos)[0]
        pos += 2
    return topic, body[pos:], qos, pid


# -- one charge point's connection ---------------------------------------------------------------
class CpProtocol(asyncio.Protocol):
    """The MQTT connection of one simulated charge point. Incoming PUBLISHes go to
    `on_message(cp, topic, payload)` synchronously; QoS 1 ones are PUBACKed right after."""

    def __init__(self, cp: str, on_message):
        self.cp = cp
        self.on_message = on_message
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future = loop.create_future()
        self.waiting: dict[int, asyncio.Future] = {}  # packet id -> SUBACK/PUBACK future
        self.next_pid = 0
        self.pubacks = 0  # PUBACKs received (QoS 1 publishes the broker took)
        self.lost: asyncio.Future = loop.create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        err = ConnectionError("{}: connection lost ({})".format(self.cp, exc))
        for fut in [self.connack, *self.waiting.values()]:
            if not fut.done():
                fut.set_exception(err)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        for kind, flags, body in split_packets(self.buf):
            if kind == PUBLISH:
                topic, payload, qos, pid = parse_publish(flags, body)
                if qos:
                    self.transport.write(puback_packet(pid))
                self.on_message(self.cp, topic, payload)
            elif kind == PUBACK or kind == SUBACK:
                pid = struct.unpack_from("!H", body)[0]
                if kind == PUBACK:
                    self.pubacks += 1
                fut = self.waiting.pop(pid, None)
                if fut is not None and not fut.done():
                    fut.set_result(body)
            elif kind == CONNACK and not self.connack.done():
                self.connack.set_result(body[1])

    def pid(self) -> int:
        self.next_pid = self.next_pid % 65535 + 1
        return self.next_pid

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        """Write a PUBLISH now; returns its packet id (0 for QoS 0)."""
        pid = self.pid() if qos else 0
        self.transport.write(publish_packet(topic, payload, qos, retain, pid))
        return pid

    async def acked(self, pid: int, packet: bytes) -> bytes:
        """Write `packet` (carrying `pid`) and wait for its PUBACK/SUBACK body."""
        fut = asyncio.get_running_loop().create_future()
        self.waiting[pid] = fut
        self.transport.write(packet)
        return await asyncio.wait_for(fut, IO_TIMEOUT_S)


# -- the load generator ----------------------------------------------------------------------------
def cp_name(k: int) -> str:
    return "CP{:04d}".format(k)


def evse_of(operator_id: str, k: int) -> str:
    return "{}*E{:04d}*1".format(operator_id, k)


def uid_of(k: int) -> str:
    """Charge point k's card: a 7-byte UID, 14 upper-case hex digits."""
    return "04C0DE{:08X}".format(k)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


@dataclass
class StepResult:
    """One run at a target rate. Latencies in ms, rates per second."""

    target_rate: float
    duration_s: float  # the sending window
    sent: int = 0
    answered: int = 0  # distinct requests answered (each at most once)
    answered_in_window: int = 0
    duplicates: int = 0  # a second answer for an id already answered in this run
    stale: int = 0  # an answer to a request of an earlier run (after that run's drain)
    unknown: int = 0  # an answer for an id never sent
    missing: int = 0  # sent, no answer by the end of the drain
    late: int = 0  # answered after its ttl_ms
    codes: dict[str, int] = field(default_factory=dict)  # StatusCode.Code -> count
    latencies_ms: list[float] = field(default_factory=list)  # sorted at the end
    session_latency_ms: dict[str, float] = field(default_factory=dict)  # SessionID -> e2e
    cdr_sent: int = 0
    cdr_acked: int = 0
    cdr_acked_in_window: int = 0
    cdr_ack_latencies_ms: list[float] = field(default_factory=list)
    cdr_window_s: float = 0.0  # first CDR sent -> last ack, seconds

    @property
    def achieved_rate(self) -> float:
        return self.answered_in_window / self.duration_s if self.duration_s else 0.0

    def p(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q)


class LoadGen:
    """`cps` simulated charge points on the broker at `url` (mqtt://HOST:PORT)."""

    def __init__(self, url: str, cps: int = 1000, operator_id: str = "DE*SIM",
                 password_format: str | None = "pw-{cp}", ttl_ms: int = 10000,
                 seed: int = 1):
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError("broker url {!r}: need mqtt://HOST[:PORT]".format(url))
        self.host, self.port = parts.hostname, parts.port or 1883
        self.names = [cp_name(k) for k in range(1, cps + 1)]
        self.index = {cp: k for k, cp in enumerate(self.names, 1)}
        self.operator_id = operator_id
        self.password_format = password_format
        self.ttl_ms = ttl_ms
        self.rng = random.Random(seed)
        self.conns: dict[str, CpProtocol] = {}
        self.boot = uuid.uuid4().hex[:8]
        self.seq = 0
        self.pending: dict[str, float] = {}  # request id -> monotonic send time
        self.answered: set[str] = set()  # request ids answered in the current run
        self.cdr_pending: dict[str, float] = {}  # CDR id -> monotonic send time
        self.step: StepResult | None = None
        self.window_end = 0.0
        self.sessions: list[tuple[int, str]] = []  # (cp index, SessionID) for CDRs
        self.other_down = 0  # down messages of other kinds (time, remote commands)
        self._pinger: asyncio.Task | None = None

    def users(self) -> dict[str, str]:
        """{cp_id: password} for the broker's password file."""
        return {cp: self.password(cp) for cp in self.names}

    def password(self, cp: str) -> str | None:
        return None if self.password_format is None else self.password_format.format(cp=cp)

    def cards(self, provider_id: str = "DE-8KZ") -> dict:
        """Every charge point's card, Authorized, in the Hubject simulator's /cards shape."""
        return {uid_of(k): {"status": "Authorized", "code": "000", "ProviderID": provider_id}
                for k in self.index.values()}

    # -- connections ---------------------------------------------------------------------------
    async def connect(self) -> float:
        """Connect every charge point, birth + availability (retained, PUBACKed), subscribe;
        returns the seconds it took."""
        t0 = time.monotonic()
        for i in range(0, len(self.names), CONNECT_BATCH):
            await asyncio.gather(*(self._connect_one(cp)
                                   for cp in self.names[i:i + CONNECT_BATCH]))
        self._pinger = asyncio.ensure_future(self._ping())
        return time.monotonic() - t0

    async def _connect_one(self, cp: str) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            lambda: CpProtocol(cp, self._on_message), self.host, self.port)
        self.conns[cp] = proto
        user = cp if self.password_format is not None else None
        proto.transport.write(connect_packet(
            cp, user, self.password(cp),
            will=(C.availability_topic(cp), C.OFFLINE, C.QOS, True), keepalive=KEEPALIVE_S))
        code = await asyncio.wait_for(proto.connack, IO_TIMEOUT_S)
        if code != 0:
            raise ConnectionError("{}: CONNACK return code {}".format(cp, code))
        pid = proto.pid()
        granted = await proto.acked(pid, subscribe_packet(pid, C.down_filter(cp), C.QOS))
        if granted[2:] != bytes((C.QOS,)):
            raise ConnectionError("{}: SUBACK {!r}".format(cp, granted[2:]))
        k = self.index[cp]
        birth = C.encode({"cp_id": cp, "EvseIDs": [evse_of(self.operator_id, k)],
                          "fw": "loadgen", "boot": self.boot})
        for topic, payload in ((C.availability_topic(cp), C.ONLINE),
                               (C.birth_topic(cp), birth)):
            pid = proto.pid()
            await proto.acked(pid, publish_packet(topic, payload, C.QOS, True, pid))

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY_S)
            for proto in self.conns.values():
                if proto.transport is not None and not proto.transport.is_closing():
                    proto.transport.write(PINGREQ_PACKET)

    async def close(self, offline: bool = True) -> None:
        """Publish availability offline (retained) like a shutdown would, then DISCONNECT."""
        if self._pinger is not None:
            self._pinger.cancel()
        for cp, proto in self.conns.items():
            if proto.transport is None or proto.transport.is_closing():
                continue
            if offline:
                proto.publish(C.availability_topic(cp), C.OFFLINE, C.QOS, True)
            proto.transport.write(DISCONNECT_PACKET)
            proto.transport.close()
        await asyncio.sleep(0)
        self.conns.clear()

    def lost_connections(self) -> int:
        return sum(1 for p in self.conns.values() if p.lost.done())

    # -- messages --------------------------------------------------------------------------------
    def _on_message(self, cp: str, topic: str, payload: bytes) -> None:
        now = time.monotonic()
        kind = topic.rsplit("/", 1)[-1]
        step = self.step
        if kind == C.DOWN_AUTHORIZE and step is not None:
            body = json.loads(payload)
            rid = body.get("id")
            sent = self.pending.pop(rid, None)
            if sent is None:
                if rid in self.answered:
                    step.duplicates += 1
                elif isinstance(rid, str) and rid.startswith(self.boot + "-"):
                    step.stale += 1
                else:
                    step.unknown += 1
                return
            self.answered.add(rid)
            ms = (now - sent) * 1000
            step.answered += 1
            if now <= self.window_end:
                step.answered_in_window += 1
            if ms > self.ttl_ms:
                step.late += 1
            step.latencies_ms.append(ms)
            code = (body.get("StatusCode") or {}).get("Code")
            step.codes[code] = step.codes.get(code, 0) + 1
            sid = body.get("SessionID")
            if sid:
                step.session_latency_ms[sid] = ms
                if len(self.sessions) < 100000:
                    self.sessions.append((self.index[cp], sid))
        elif kind == C.DOWN_ACK and step is not None:
            for mid in json.loads(payload).get("ids", ()):
                sent = self.cdr_pending.pop(mid, None)
                if sent is not None:
                    step.cdr_acked += 1
                    if now <= self.window_end:
                        step.cdr_acked_in_window += 1
                    step.cdr_ack_latencies_ms.append((now - sent) * 1000)
        else:
            self.other_down += 1

    def _request(self, k: int) -> None:
        cp = self.names[k - 1]
        self.seq += 1
        rid = "{}-{}".format(self.boot, self.seq)
        msg = {"type": "authorize_start", "id": rid, "ttl_ms": self.ttl_ms,
               "EvseID": evse_of(self.operator_id, k),
               "Identification": {"RFIDMifareFamilyIdentification": {"UID": uid_of(k)}}}
        self.pending[rid] = time.monotonic()
        self.conns[cp].publish(C.up_topic(cp, C.UP_AUTHORIZE), C.encode(msg))

    def cdr(self, k: int, session_id: str, now_s: float | None = None) -> dict:
        """A CDR as a charge point's outbox holds it (firmware/session.py end_records)."""
        end = int(now_s if now_s is not None else time.time()) - 60
        start = end - 3600
        local = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

        def iso(t):
            return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))

        return {"type": "cdr", "id": "cdr-" + local, "SessionID": session_id,
                "CPOPartnerSessionID": local, "EvseID": evse_of(self.operator_id, k),
                "Identification": {"RFIDMifareFamilyIdentification": {"UID": uid_of(k)}},
                "ChargingStart": iso(start + 5), "SessionStart": iso(start),
                "MeterValueStart": 1234.5, "ChargingEnd": iso(end - 5),
                "SessionEnd": iso(end), "ConsumedEnergy": 11.042,
                "MeterValueEnd": 1245.542, "ProviderID": "DE-8KZ"}

    def _send_cdr(self) -> bool:
        if not self.sessions:
            return False
        k, sid = self.sessions.pop(self.rng.randrange(len(self.sessions)))
        cp = self.names[k - 1]
        msg = self.cdr(k, sid)
        self.cdr_pending[msg["id"]] = time.monotonic()
        self.conns[cp].publish(C.up_topic(cp, C.UP_CDR), C.encode(msg))
        return True

    # -- a run -----------------------------------------------------------------------------------
    async def run(self, rate: float, duration_s: float, cdr_rate: float = 0.0,
                  drain_s: float | None = None, on_cdr=None) -> StepResult:
        """Send authorize_start at `rate`/s for `duration_s`, then wait up to `drain_s`
        (default ttl_ms + 1 s) for the answers (and CDR acks). `on_cdr(n)` is called before
        the n-th CDR goes out (the bench injects Hubject faults there)."""
        step = StepResult(rate, duration_s)
        self.step = step
        self.answered.clear()
        order = list(self.index.values())
        self.rng.shuffle(order)
        n_cp = len(order)
        loop_t0 = time.monotonic()
        self.window_end = loop_t0 + duration_s
        first_cdr = None
        while True:
            now = time.monotonic()
            elapsed = min(now - loop_t0, duration_s)
            due = int(elapsed * rate) - step.sent
            for _ in range(due):
                self._request(order[step.sent % n_cp])
                step.sent += 1
            if cdr_rate:
                due = int(elapsed * cdr_rate) - step.cdr_sent
                for _ in range(due):
                    if on_cdr is not None:
                        on_cdr(step.cdr_sent)
                    if not self._send_cdr():
                        break
                    if first_cdr is None:
                        first_cdr = now
                    step.cdr_sent += 1
            if elapsed >= duration_s:
                break
            await asyncio.sleep(TICK_S)
        drain_end = time.monotonic() + (self.ttl_ms / 1000 + 1 if drain_s is None else drain_s)
        last_ack = time.monotonic()
        while (self.pending or self.cdr_pending) and time.monotonic() < drain_end:
            acked = step.cdr_acked
            await asyncio.sleep(0.01)
            if step.cdr_acked != acked:
                last_ack = time.monotonic()
        if first_cdr is not None and step.cdr_acked:
            step.cdr_window_s = last_ack - first_cdr
        step.missing = len(self.pending)
        self.pending.clear()
        self.cdr_pending.clear()
        step.latencies_ms.sort()
        step.cdr_ack_latencies_ms.sort()
        self.step = None
        return step


def summary(step: StepResult) -> str:
    """One line for a step (ms, per second)."""
    def ms(v):
        return "n/a" if v is None else "{:.1f}".format(v)

    return ("target {:.0f}/s: sent {} answered {} ({:.0f}/s) missing {} duplicates {} late {} "
            "stale {} codes {} e2e p50 {} ms p99 {} ms max {} ms".format(
                step.target_rate, step.sent, step.answered, step.achieved_rate, step.missing,
                step.duplicates, step.late, step.stale, step.codes, ms(step.p(50)), ms(step.p(99)),
                ms(step.latencies_ms[-1] if step.latencies_ms else None)))


async def _main(args) -> int:
    gen = LoadGen(args.broker, args.cps, args.operator_id,
                  None if args.password_format == "" else args.password_format, args.ttl_ms)
    took = await gen.connect()
    print("{} charge points connected in {:.1f} s".format(len(gen.conns), took), flush=True)
    step = await gen.run(args.rate, args.duration, args.cdr_rate)
    print(summary(step), flush=True)
    await gen.close()
    return 0 if step.missing == 0 and step.duplicates == 0 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.loadgen", description=__doc__.split(
        "\n")[0])
    p.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    p.add_argument("--cps", type=int, default=1000, help="charge points (default 1000)")
    p.add_argument("--rate", type=float, default=100.0, help="authorize requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    p.add_argument("--ttl-ms", type=int, default=10000, help="each request's ttl_ms")
    p.add_argument("--cdr-rate", type=float, default=0.0, help="CDRs per second (0: none)")
    p.add_argument("--operator-id", default="DE*SIM")
    p.add_argument("--password-format", default="pw-{cp}",
                   help="password per charge point, {cp} = cp_id; '' = anonymous")
    args = p.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
