"""The uplink's MQTT transport: umqtt.simple 1.3.4 driven from its own thread, so nothing the
network does -- DNS, TCP connect, TLS handshake, CONNACK, a QoS 1 wait, a stalled or dead
broker -- can delay the control loop ("Safety before networking", ../shared/ARCHITECTURE.md).

Why a thread and not non-blocking sockets:
- DNS: `getaddrinfo` has no non-blocking form on MicroPython (unix port, ESP32) nor in CPython's
  socket module; only another thread keeps a slow resolver off the loop.
- TLS: MicroPython's `wrap_socket` runs the handshake in a C loop (extmod/modtls_mbedtls.c); a
  non-blocking handshake means driving mbedTLS through reads with no call that says when it is
  done. In a thread the handshake simply blocks there, bounded by the socket time-out.
- umqtt.simple is written for blocking sockets (CONNACK, SUBACK and PUBACK are read loops,
  hardware.md §7.1). In a thread it is used unchanged, as the dependency it is (tools/deps.py),
  instead of re-implementing its packet handling around non-blocking sockets.
- `_thread` exists on the ESP32 and the unix port (`micropython -c "import _thread"`), and on
  CPython. The cost: a thread stack (outside the GC heap on the unix port: pthreads), one lock,
  three short lists.
The loop and the thread share only those lists, each touched under the lock for a list operation
and never across I/O, so `poll()` and `publish()` wait at most for another list operation.

API (every call returns at once; `poll()` belongs in each control-loop pass):

    up = Uplink("mqtts://broker.example:8883", "CP01", user="CP01", password="...",
                ca_file="/data/ca.pem", keepalive_s=30,
                will=("mpevse/CP01/availability", b"offline", True, 1))
    up.subscribe("mpevse/CP01/down/#", 1)      # made again on every connection
    up.birth("mpevse/CP01/availability", b"online", 1, True)  # sent first on every connection
    up.start()
    item = up.poll()   # None, a received (topic str, payload bytes), or a status change
    up.publish(topic, payload, qos, retain)     # True: queued; False: the queue is full
    up.connected                                 # True between "connected" and "disconnected"
    up.stop()

poll() hands out the newest status change first (a change the loop has not seen yet is replaced
by a newer one), then received messages in order:

| item | when |
|---|---|
| ("connected", "") | CONNACK accepted, subscriptions made, birth messages published |
| ("disconnected", "dns: ...") | the host name did not resolve |
| ("disconnected", "tcp: ...") | TCP connect refused or timed out |
| ("disconnected", "tls: ...") | handshake: not signed by ca_file, wrong host name, time-out |
| ("disconnected", "refused: not authorized (5)") | CONNACK code 1..5 (MQTT 3.1.1 §3.2.2.3) |
| ("disconnected", "connect: ...") | no CONNACK within `timeout_s`, or not a CONNACK |
| ("disconnected", "subscribe: ...") | SUBACK refused (0x80, e.g. an ACL) or missing |
| ("disconnected", "link: no PINGRESP within 30 s") | a broker that stopped answering |
| ("disconnected", "link: closed by the broker") | the connection ended (broker gone or restarted) |
| ("disconnected", "link: ...") | any other read/write error or time-out on a running link |
| ("disconnected", "stopped") | after stop() |

Every "disconnected" (except "stopped") is followed by another attempt after a back-off: 1 s
after a link that was up and after the first failed attempt, then doubling with each further
failure up to 60 s (`backoff_ms`), each wait drawn within +-25 % (os.urandom) so a fleet never
reconnects in step; the first attempt after start() is immediate. Refused credentials therefore
end up retrying about once a minute: no crash loop.

Queues. `publish` appends to a queue of `queue_len` messages (default 16) kept across reconnects
and sent in order once connected, right after the birth messages; when it is full, publish
returns False and queues nothing -- the caller keeps what must not be lost (durable messages sit
in the flash outbox until the backend acknowledges them, so they are resent anyway). A QoS 1
message leaves the queue only when its PUBACK came; a link lost before that sends it again on the
next connection (no DUP flag: umqtt 1.3.4 has none; ids make redelivery harmless). Received
messages wait in an inbox: the thread stops reading the socket while `queue_len` of them wait for
`poll()`; only messages that arrive during a PUBACK/SUBACK wait can go beyond, up to twice that,
after which they are dropped and counted in `lost`. QoS 2 is not supported (umqtt 1.3.4 asserts).

Link supervision. The thread sends PINGREQ when it has written nothing for keepalive_s / 2 (umqtt
never pings by itself, hardware.md §7.1; the broker drops a client silent for 1.5 x keepalive);
if then no byte at all comes back within keepalive_s, the link is declared stalled and
reconnected. Every blocking call has a time-out (`timeout_s`, default 10 s): TCP connect, each
TLS handshake read, CONNACK, SUBACK, PUBACK, any read inside a packet. `getaddrinfo` has none: a
hanging resolver stalls only this thread. A handshake that trickles (each byte within timeout_s)
takes as long as it takes, in this thread.

Sessions are clean (clean_session=1): the transport subscribes again itself on every connection
(umqtt.robust relies on the broker's session and never re-subscribes, hardware.md §7.2), and a
charge point back after an outage does not receive commands that were queued for it an hour ago.

TLS (`mqtts://`): `ssl.SSLContext(PROTOCOL_TLS_CLIENT)` with `verify_mode = CERT_REQUIRED` set
explicitly (MicroPython's default is CERT_NONE: the broker would not be verified) and
`server_hostname` passed to `wrap_socket`, so the certificate must chain to `ca_file` and name the
host. `ca_file` may be PEM or DER: PEM certificates are decoded to DER here, since the unix
port's mbedTLS build accepts only DER (`load_verify_locations(cadata=...)`).

How umqtt gets the socket: umqtt.simple 1.3.4 opens its own socket in `connect()` and knows TLS
only as `ssl=True, ssl_params` (the old `ussl.wrap_socket`, no verification). So this module
opens, connects and wraps the socket itself, then hands it over by replacing the `socket` name
inside umqtt.simple with `_Handover`: its `socket()` returns the prepared connection, its
`getaddrinfo()` a dummy address, and the connection's `connect()` does nothing. `_Conn` gives
that connection the stream interface umqtt expects, on MicroPython and CPython alike.

Heap (MicroPython): one Uplink, its client, lock and lists live for the whole run; each
connection makes a socket, a `_Conn` and (mqtts) a TLS socket, all garbage after it; the idle
connected loop allocates nothing (`ipoll`, ticks). Per message: the caller's tuple and encoded
topic, umqtt's small packet buffers, and for a received message its topic, payload and tuple.

Where the dependency comes from: `tools/deps.py` fetches umqtt.simple 1.3.4 (sha256-pinned) into
`.deps/`; `tools/build.py` compiles it into the image (`umqtt/simple.mpy`, importable from
ROMFS); on CPython this module puts `.deps` on sys.path and provides the u-module names umqtt
imports (usocket, ustruct, ubinascii), which MicroPython has built in. On the ESP32 it is part of
the image the deploy writes (tools/deploy.py). One Uplink per process is the intended use;
two would take turns handing their sockets to umqtt (`_HANDOVER_LOCK`).

ESP32 note: its port runs threads under a GIL (MICROPY_PY_THREAD_GIL in
ports/esp32/mpconfigport.h; this unix port reports `_thread='unsafe'`, no GIL). Blocking socket
calls release it, but mbedTLS's handshake arithmetic runs in C with the GIL held: the loop gap
during an mqtts handshake must be measured on the device.
"""

import _thread
import os
import select
import socket
import sys

from hal.compat import MICROPYTHON, sleep_ms, ticks_add, ticks_diff, ticks_ms

if MICROPYTHON:
    import io
    from errno import ECONNREFUSED, EINPROGRESS, ETIMEDOUT

    _SSL_WANT_READ = ()
    _POLL_FAILED = select.POLLERR | select.POLLHUP

    class _Link(io.IOBase):
        """The TCP socket as the stream MicroPython's TLS layer reads and writes (mbedTLS calls
        readinto/write from C). The socket is non-blocking. While `wait_ms` > 0 (the handshake,
        which runs in a C loop) each call waits for the socket itself, at most wait_ms (ms)
        from the call's start, and then fails with ETIMEDOUT (a negative result is an errno
        to the stream layer); with wait_ms 0 a call that would block returns None (mbedTLS:
        WANT_READ / WANT_WRITE) and _Conn does the waiting, with its own deadline."""

        def __init__(self, conn):
            self.conn = conn
            self.wait_ms = 0

        def readinto(self, buf):
            return self._io(buf, True)

        def write(self, buf):
            return self._io(buf, False)

        def _io(self, buf, reading):
            raw = self.conn.raw
            end = ticks_add(ticks_ms(), self.wait_ms)
            while True:
                n = raw.readinto(buf) if reading else raw.write(buf)
                if n is not None or not self.wait_ms:
                    return n
                if not self.conn.wait(select.POLLIN if reading else select.POLLOUT, end):
                    return -ETIMEDOUT

        def ioctl(self, req, arg):
            if req == 4:  # MP_STREAM_CLOSE: the TLS socket is closing, this goes with it
                self.conn.raw.close()
                return 0
            return -22  # EINVAL: the TLS layer asks nothing else of it (it is never polled)
else:
    import ssl as _cpython_ssl

    _SSL_WANT_READ = (BlockingIOError, _cpython_ssl.SSLWantReadError)


def _cpython_shims():
    """CPython: umqtt.simple 1.3.4 imports usocket, ustruct and ubinascii (MicroPython's names);
    give it CPython's modules under those names, and find it in `.deps/` (tools/deps.py)."""
    import binascii
    import struct

    for name, module in (("usocket", socket), ("ustruct", struct), ("ubinascii", binascii)):
        sys.modules.setdefault(name, module)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    deps = os.path.join(root, ".deps")
    if deps not in sys.path:
        sys.path.append(deps)


if not MICROPYTHON:
    _cpython_shims()

from umqtt import simple  # noqa: E402  (after the CPython shims)

CONNECTED = "connected"
DISCONNECTED = "disconnected"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
IDLE_MS = 10  # the thread's wait for broker bytes while idle; also the publish latency
WRITE_BUF = 256  # umqtt writes a packet in 3..6 pieces: gathered here, sent as one (bytes)
# setsockopt(IPPROTO_TCP, TCP_NODELAY): 6 and 1 on Linux and lwIP alike; MicroPython's unix
# socket module does not name them
_IPPROTO_TCP = 6
_TCP_NODELAY = 1
STOP_CHECK_MS = 100  # back-off waits are cut into slices this long so stop() is seen
BACKOFF_MIN_MS = 1000
BACKOFF_MAX_MS = 60000
TOPIC_MAX = 120  # umqtt 1.3.4 encodes SUBSCRIBE's remaining length in one byte (< 128)
# CONNACK return codes 1..5, MQTT 3.1.1 §3.2.2.3
REFUSED = ("", "unacceptable protocol version", "identifier rejected", "server unavailable",
           "bad user name or password", "not authorized")


class LinkDown(Exception):
    """The running link ended: the broker closed it or stopped answering (message says which)."""


class _Stopped(Exception):
    """stop() came while connecting: the attempt ends before its next step."""


def parse_url(url):
    """"mqtt://host[:port]" or "mqtts://host[:port]" -> (scheme, host, port); IPv6 hosts in
    brackets. ValueError names what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError("broker URL must start with mqtt:// or mqtts://: " + url)
    if "/" in rest or "?" in rest or "@" in rest:
        raise ValueError("broker URL takes host and port only (credentials are separate): "
                         + url)
    port = DEFAULT_PORTS[scheme]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail:
            if not tail.startswith(":"):
                raise ValueError("bad broker URL: " + url)
            port = tail[1:]
    elif ":" in rest:
        host, _, port = rest.rpartition(":")
    else:
        host = rest
    try:
        port = int(port)
    except ValueError:
        raise ValueError("bad port in broker URL: " + url) from None
    if not host or not 0 < port < 65536:
        raise ValueError("bad broker URL: " + url)
    return scheme, host, port


def ca_certificates(data):
    """The DER certificates in a CA file's bytes: PEM blocks decoded, or the DER file as is."""
    from binascii import a2b_base64

    if b"-----BEGIN" not in data:
        return [data]
    out = []
    for block in data.split(b"-----BEGIN CERTIFICATE-----")[1:]:
        body = block.split(b"-----END CERTIFICATE-----")[0]
        out.append(a2b_base64(b"".join(body.split())))
    if not out:
        raise ValueError("CA file holds no PEM CERTIFICATE block")
    return out


def tls_context(ca_file):
    """A client context that verifies the broker: CERT_REQUIRED against the certificates in
    `ca_file` (the host name is checked through wrap_socket's server_hostname)."""
    import ssl

    with open(ca_file, "rb") as f:
        certs = ca_certificates(f.read())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    for der in certs:
        ctx.load_verify_locations(cadata=der)
    return ctx


def _bytes(text):
    return text.encode() if isinstance(text, str) else text


def _describe(e):
    text = " ".join(str(e).split())  # one line (mbedTLS verify messages span lines)
    if isinstance(e, LinkDown):
        return text
    name = type(e).__name__
    return name + ": " + text if text else name


class _Conn:
    """One connection to the broker in the shape umqtt.simple 1.3.4 uses its socket:
    `read(n)` -> exactly n bytes (None when non-blocking and nothing waits), `write(buf[, n])`,
    `setblocking(flag)` (True restores the time-out, not "wait forever"), `close()`; `connect()`
    does nothing: the transport has connected (and verified) it already. Counts what it reads
    and stamps what it writes, for keep-alive and stall detection.

    Time-outs. CPython: the socket's own (settimeout(timeout_s)), which CPython keeps as a
    deadline across interrupted system calls. MicroPython: the socket is non-blocking and every
    blocking step -- TCP connect, each TLS handshake read or write (_Link), each read(n), each
    write -- waits in select.poll with a deadline of its own (ms ticks), timeout_s after the
    step began. MicroPython's settimeout is not used: on the unix port the control loop's
    gc.collect() (firmware/shell.py, every second) interrupts this thread's blocking recv to
    scan its stack, and the recv is retried with a fresh SO_RCVTIMEO, so a time-out longer
    than the collection period never expired (an attempt into a silent broker hung until the
    connection was reset).

    umqtt writes each packet in pieces (fixed header, variable header, each string): they are
    gathered in `wbuf` and sent as one segment (one TLS record) when umqtt starts waiting for
    the answer (a blocking read) or the transport calls flush() after a packet. With
    TCP_NODELAY set, no packet then waits for the ACK of the previous one (Nagle against the
    peer's delayed ACK: about 40 ms per packet otherwise)."""

    def __init__(self, raw, timeout_s, wbuf):
        self.raw = raw  # the TCP socket
        self.io = raw  # what the bytes go through: the TCP socket, or the TLS socket over it
        self._timed = raw  # CPython: what time-outs are set on (the TLS socket once secured)
        self.tls = False
        self.held = False  # TLS: bytes may wait decrypted, where poll does not see them
        self.timeout_s = timeout_s
        self.timeout_ms = int(timeout_s * 1000)
        self.blocking = True
        self.rx = 0  # bytes read so far: any byte after a PINGREQ shows the broker is alive
        self.tx_at = ticks_ms()  # when the last write ended (ms ticks)
        self._wbuf = wbuf
        self._wlen = 0  # bytes gathered in wbuf, not sent yet
        self._poller = None
        self._flags = 0  # MicroPython: the poll flags wait() saw last
        if MICROPYTHON:
            raw.setblocking(False)
            self._poller = select.poll()
            self._poller.register(raw, select.POLLIN)
        else:
            raw.settimeout(timeout_s)
        raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)

    def open(self, addr):
        """TCP connect to addr, within timeout_s (OSError otherwise)."""
        if not MICROPYTHON:
            self.raw.connect(addr)
            return
        try:
            self.raw.connect(addr)
            return
        except OSError as e:
            if e.args[0] != EINPROGRESS:
                raise
        if not self.wait(select.POLLOUT, ticks_add(ticks_ms(), self.timeout_ms)):
            raise OSError(ETIMEDOUT)
        if self._flags & _POLL_FAILED:
            self.raw.connect(addr)  # raises the connection's error (ECONNREFUSED, ...)
            raise OSError(ECONNREFUSED)

    def secure(self, ctx, host):
        """The TLS handshake (certificate chain and host name checked by ctx), each of its
        reads and writes within timeout_s; then everything goes through the TLS socket."""
        if MICROPYTHON:
            link = _Link(self)
            link.wait_ms = self.timeout_ms
            self.io = ctx.wrap_socket(link, server_hostname=host)
            link.wait_ms = 0
        else:  # CPython: the SSLSocket replaces the plain one
            self.io = self._timed = ctx.wrap_socket(self.raw, server_hostname=host)
        self.tls = True

    def connect(self, addr):
        return None  # connected by Uplink._open before umqtt sees it

    def setblocking(self, flag):
        self.blocking = flag
        if not MICROPYTHON:
            self._timed.settimeout(self.timeout_s if flag else 0)

    def wait(self, event, end):
        """MicroPython: wait until the socket is ready for `event` (select.POLLIN/POLLOUT) or
        failed; False once the deadline `end` (ms ticks) has passed."""
        poller = self._poller
        poller.modify(self.raw, event)
        while True:
            left = ticks_diff(end, ticks_ms())
            if left <= 0:
                return False
            for _obj, flags in poller.ipoll(left):  # no allocation, unlike poll()
                self._flags = flags
                return True

    def read(self, n):
        if self.blocking:
            self.flush()  # umqtt waits for an answer: what it wrote must be on its way
        data = self.io.read(n) if MICROPYTHON else self._recv(n)
        if data is None:
            if not self.blocking:
                self.held = False
                return None  # non-blocking, nothing there
            data = b""  # MicroPython: nothing yet, wait for it
        elif not data:
            raise LinkDown("closed by the broker")
        if len(data) < n:
            if not MICROPYTHON:
                raise LinkDown("read cut short: {} of {} bytes".format(len(data), n))
            data = self._rest(data, n)
        self.rx += n
        self.held = self.tls
        return data

    def _rest(self, got, n):
        """MicroPython: the rest of n bytes after `got`, all within timeout_s."""
        end = ticks_add(ticks_ms(), self.timeout_ms)
        while len(got) < n:
            if not self.wait(select.POLLIN, end):
                raise LinkDown("read timed out after {} of {} bytes".format(len(got), n))
            part = self.io.read(n - len(got))
            if part is not None:
                if not part:
                    raise LinkDown("closed by the broker")
                got += part
        return got

    def _recv(self, n):
        got = b""
        while len(got) < n:
            try:
                part = self.io.recv(n - len(got))
            except _SSL_WANT_READ:
                return got or None  # only check_msg reads non-blocking, and it reads 1 byte
            if not part:
                break
            got += part
        return got

    def write(self, buf, n=None):
        size = len(buf) if n is None or n > len(buf) else n
        if self._wlen + size > len(self._wbuf):
            self.flush()
        if size > len(self._wbuf):
            self._send(memoryview(buf)[:size])  # a large payload goes out directly
        else:
            self._wbuf[self._wlen:self._wlen + size] = memoryview(buf)[:size]
            self._wlen += size
        return size

    def flush(self):
        """Send what write() gathered (blocking, bounded by the time-out)."""
        if self._wlen:
            size = self._wlen
            self._wlen = 0
            self._send(memoryview(self._wbuf)[:size])

    def _send(self, data):
        if MICROPYTHON:
            end = ticks_add(ticks_ms(), self.timeout_ms)
            done = 0
            while done < len(data):
                sent = self.io.write(data[done:] if done else data)
                if sent:
                    done += sent
                elif not self.wait(select.POLLOUT, end):
                    raise LinkDown("write timed out after {} of {} bytes".format(
                        done, len(data)))
        else:
            self.io.sendall(data)
        self.tx_at = ticks_ms()

    def readable(self, timeout_ms):
        """True when a packet's first byte can be read now or arrives within timeout_ms. Bytes
        the TLS layer already decrypted do not show to poll: `held` says there may be some
        (after every read, until a non-blocking read finds nothing)."""
        if MICROPYTHON:
            self._poller.modify(self.raw, select.POLLIN)
            for _ in self._poller.ipoll(timeout_ms):  # no allocation, unlike poll()
                return True
            return False
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self.io, select.POLLIN)
        return bool(self._poller.poll(timeout_ms))

    def close(self):
        """Send what is gathered (umqtt's disconnect() writes DISCONNECT, then closes), then
        close. -> the error, if any: the link is being dropped either way, so it is not raised."""
        error = None
        try:
            self.flush()
        except (OSError, LinkDown) as e:
            self._wlen = 0
            error = e
        try:
            self.io.close()
        except OSError as e:
            error = e
        return error


class _Handover:
    """Stands in for the `socket` module inside umqtt.simple, so MQTTClient.connect() takes the
    connection this transport opened: socket() returns it, getaddrinfo() a dummy address."""

    def __init__(self):
        self.conn = None

    def socket(self, *args):
        return self.conn

    def getaddrinfo(self, host, port, *args):
        return ((0, 0, 0, "", None),)


_HANDOVER = _Handover()
_HANDOVER_LOCK = _thread.allocate_lock()
simple.socket = _HANDOVER


class Uplink:
    """The MQTT link to the backend; see the module docstring for the API and its behaviour.
    `timeout_s`: every blocking step (s); `queue_len`: outgoing queue and inbox size (messages);
    `backoff_ms`: (first, longest) wait between attempts (ms), +-25 % jitter. `clock_sync`:
    None or a blocking callable (the board's NTP, e.g. Esp32Board.sync_clock) run in this
    thread after each connection came up -- the network is there, and the loop never waits for
    it; an exception it raises is kept in `clock_error`."""

    def __init__(self, server_url, client_id, user=None, password=None, ca_file=None,
                 keepalive_s=30, will=None, timeout_s=10, queue_len=16,
                 backoff_ms=(BACKOFF_MIN_MS, BACKOFF_MAX_MS), clock_sync=None):
        scheme, self.host, self.port = parse_url(server_url)
        if not 1 <= keepalive_s <= 65535:
            raise ValueError("keepalive_s must be 1..65535, got {}".format(keepalive_s))
        if scheme == "mqtts" and not ca_file:
            raise ValueError("mqtts:// needs ca_file: without it the broker is not verified")
        if scheme == "mqtt" and ca_file:
            raise ValueError("ca_file given for a plain mqtt:// broker: use mqtts://")
        if user is None and password is not None:
            raise ValueError("a password needs a user name")
        self._tls = tls_context(ca_file) if scheme == "mqtts" else None
        self._client = simple.MQTTClient(
            _bytes(client_id), self.host, self.port, None if user is None else _bytes(user),
            None if user is None else _bytes(password or b""), keepalive_s)
        if will is not None:
            topic, payload, retain, qos = will
            self._client.set_last_will(_bytes(topic), _bytes(payload), retain, qos)
        self._client.set_callback(self._received)
        self.keepalive_ms = keepalive_s * 1000
        self.timeout_s = timeout_s
        self.queue_len = queue_len
        self.backoff_min_ms, self.backoff_max_ms = backoff_ms
        self._wbuf = bytearray(WRITE_BUF)  # reused by every connection
        self._lock = _thread.allocate_lock()
        self._out = []  # (topic bytes, payload bytes, qos, retain), oldest first
        self._in = []  # (topic str, payload bytes), oldest first
        self._event = None  # the newest status change poll() has not handed out yet
        self._subs = []  # (topic bytes, qos): made on every connection
        self._births = []  # (topic bytes, payload bytes, qos, retain): first on every connection
        self._subbed = 0  # how many of _subs this connection has made
        self.connected = False
        self.reason = ""  # why the link is down ("" until the first failure)
        self.connects = 0  # connections made so far
        self.failures = 0  # failed attempts since the link was last up
        self.retry_ms = 0  # the wait drawn after the latest attempt (ms)
        self.lost = 0  # received messages dropped because the inbox was full
        self.running = False  # the thread is alive
        self._stop = False
        self._clock_sync = clock_sync
        self.clock_error = None  # str: what clock_sync raised last

    # -- the control loop's side: each call returns at once ------------------------------------
    def start(self):
        """Start the thread; the first attempt is made at once."""
        if self.running:
            return
        self._stop = False
        self.running = True
        _thread.start_new_thread(self._run, ())

    def stop(self):
        """Ask the thread to end: queued messages are sent and DISCONNECT too if the link is up
        (so the broker does not publish the will: publish your own "offline" first). It ends
        within IDLE_MS when idle, or after the blocking step in progress (<= timeout_s, or a
        hanging DNS look-up); `running` turns False then, and poll() gives "stopped"."""
        self._stop = True

    def publish(self, topic, payload, qos=0, retain=False):
        """Queue one message; True if queued, False if the queue already holds queue_len."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1 (umqtt.simple 1.3.4 has no QoS 2)")
        item = (_bytes(topic), _bytes(payload), qos, retain)
        self._lock.acquire()
        try:
            if len(self._out) >= self.queue_len:
                return False
            self._out.append(item)
            return True
        finally:
            self._lock.release()

    def pending(self):
        """Messages queued and not yet sent (QoS 1: not yet acknowledged)."""
        return len(self._out)

    def subscribe(self, topic, qos=0):
        """Subscribe now if connected, and again on every connection (once per topic)."""
        topic = _bytes(topic)
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not topic or len(topic) > TOPIC_MAX:
            raise ValueError("subscription topic must be 1..{} bytes".format(TOPIC_MAX))
        self._lock.acquire()
        try:
            for t, _q in self._subs:
                if t == topic:
                    return
            self._subs.append((topic, qos))
        finally:
            self._lock.release()

    def birth(self, topic, payload, qos=1, retain=True):
        """Publish this message first on every connection (replaces an earlier one for the same
        topic): the retained birth message and availability "online". Not sent now: publish()
        it too if the link is up and it changed."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        item = (_bytes(topic), _bytes(payload), qos, retain)
        self._lock.acquire()
        try:
            for i in range(len(self._births)):
                if self._births[i][0] == item[0]:
                    self._births[i] = item
                    return
            self._births.append(item)
        finally:
            self._lock.release()

    def poll(self):
        """The newest unseen status change, else the oldest received message, else None."""
        if self._event is None and not self._in:
            return None
        self._lock.acquire()
        try:
            item = self._event
            if item is not None:
                self._event = None
                return item
            return self._in.pop(0) if self._in else None
        finally:
            self._lock.release()

    # -- the thread's side ---------------------------------------------------------------------
    def _received(self, topic, payload):
        """umqtt's callback for an incoming PUBLISH (runs in the thread)."""
        item = (topic.decode(), payload)
        self._lock.acquire()
        try:
            if len(self._in) >= 2 * self.queue_len:
                self.lost += 1
            else:
                self._in.append(item)
        finally:
            self._lock.release()

    def _status(self, kind, reason):
        self.connected = kind == CONNECTED
        if kind == DISCONNECTED:
            self.reason = reason
        self._lock.acquire()
        try:
            self._event = (kind, reason)
        finally:
            self._lock.release()

    def _at(self, items, i):
        """items[i] or None, read under the lock (the loop may be appending)."""
        self._lock.acquire()
        try:
            return items[i] if i < len(items) else None
        finally:
            self._lock.release()

    def _run(self):
        try:
            delay = 0
            while not self._stop:
                if delay and self._wait(delay):
                    break
                if self._attempt():
                    self.failures = 0
                else:
                    self.failures += 1
                delay = self._backoff()
            if self.reason != "stopped":
                self._status(DISCONNECTED, "stopped")
        except Exception as e:  # a bug must not end the thread unreported
            self._status(DISCONNECTED, "bug: " + _describe(e))
            raise
        finally:
            self.running = False

    def _backoff(self):
        """The next wait (ms): backoff_min_ms after a link that was up and after the first
        failed attempt, doubled with each further failure up to backoff_max_ms; then drawn
        within +-25 %."""
        base = self.backoff_min_ms << min(max(self.failures - 1, 0), 16)
        base = min(base, self.backoff_max_ms)
        spread = int.from_bytes(os.urandom(2), "big") % 501  # 0..500 per mille
        self.retry_ms = base * (750 + spread) // 1000
        return self.retry_ms

    def _wait(self, ms):
        """Sleep ms in slices; True if stop() came meanwhile."""
        end = ticks_add(ticks_ms(), ms)
        while not self._stop:
            left = ticks_diff(end, ticks_ms())
            if left <= 0:
                return False
            sleep_ms(min(left, STOP_CHECK_MS))
        return True

    def _step(self, stage):
        """The next stage's name, unless stop() came meanwhile."""
        if self._stop:
            raise _Stopped()
        return stage

    def _attempt(self):
        """One connection from DNS to its end; reports it through _status. -> True if the link
        came up (the back-off then starts again from backoff_min_ms)."""
        conn = None
        stage = "dns"
        up = False
        reason = "stopped"
        try:
            addrs = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)
            stage = self._step("tcp")
            conn = self._open(addrs)
            if self._tls is not None:
                stage = self._step("tls")
                conn.secure(self._tls, self.host)
            stage = self._step("connect")
            self._connect(conn)
            stage = self._step("subscribe")
            self._subbed = 0
            self._subscribe_new()
            stage = self._step("birth")
            self._publish_births(conn)
            self.connects += 1
            up = True
            self._status(CONNECTED, "")
            if self._clock_sync is not None:
                try:
                    self._clock_sync()
                except Exception as e:  # NTP is a nicety: the link goes on without it
                    self.clock_error = _describe(e)
            stage = "link"
            self._session(conn)
            self._goodbye(conn)  # _session returns only once stop() came
        except _Stopped:
            reason = "stopped"
        except simple.MQTTException as e:
            code = e.args[0] if e.args else -1
            if stage == "connect" and 0 < code < len(REFUSED):
                reason = "refused: {} ({})".format(REFUSED[code], code)
            else:
                reason = "{}: refused by the broker ({})".format(stage, code)
        except Exception as e:
            reason = stage + ": " + _describe(e)
        if conn is not None:
            conn.close()
        if not self._stop or up:
            self._status(DISCONNECTED, reason)
        return up

    def _open(self, addrs):
        """A TCP connection to the first address that accepts (each bounded by timeout_s)."""
        error = None
        for family, kind, proto, _name, addr in addrs:
            conn = _Conn(socket.socket(family, kind, proto), self.timeout_s, self._wbuf)
            try:
                conn.open(addr)
                return conn
            except OSError as e:
                error = e
                conn.close()
        raise error if error is not None else OSError("no address for " + self.host)

    def _connect(self, conn):
        """CONNECT/CONNACK through umqtt, on the connection handed over to it."""
        _HANDOVER_LOCK.acquire()
        try:
            _HANDOVER.conn = conn
            self._client.connect(True)
        finally:
            _HANDOVER.conn = None
            _HANDOVER_LOCK.release()

    def _next_pid(self):
        """umqtt 1.3.4 increments pid without bound; MQTT packet ids are 1..65535 (CPython's
        struct refuses more, MicroPython would wrap to the invalid 0)."""
        if self._client.pid >= 65535:
            self._client.pid = 0

    def _subscribe_new(self):
        while True:
            sub = self._at(self._subs, self._subbed)
            if sub is None:
                return
            self._next_pid()
            self._client.subscribe(sub[0], sub[1])
            self._subbed += 1

    def _publish_births(self, conn):
        i = 0
        while True:
            item = self._at(self._births, i)
            if item is None:
                return
            self._send(conn, item)
            i += 1

    def _send(self, conn, item):
        topic, payload, qos, retain = item
        self._next_pid()
        self._client.publish(topic, payload, retain, qos)  # QoS 1: returns after its PUBACK
        conn.flush()  # QoS 0: nothing read, so nothing flushed it yet

    def _session(self, conn):
        """The connected link until stop() (returns) or a failure (raises): queued messages
        out, received messages in, PINGREQ when idle, stall detection."""
        half = self.keepalive_ms // 2
        ping_at = 0
        ping_rx = -1  # conn.rx when the outstanding PINGREQ went out; -1: none outstanding
        while not self._stop:
            self._subscribe_new()
            item = self._at(self._out, 0)
            if item is not None:
                self._send(conn, item)
                self._lock.acquire()
                try:
                    self._out.pop(0)  # only this thread removes, so it is still the first
                finally:
                    self._lock.release()
            now = ticks_ms()
            if ping_rx >= 0:
                if conn.rx != ping_rx:
                    ping_rx = -1
                elif ticks_diff(now, ping_at) >= self.keepalive_ms:
                    raise LinkDown("no PINGRESP within {} s".format(self.keepalive_ms // 1000))
            if ping_rx < 0 and ticks_diff(now, conn.tx_at) >= half:
                self._client.ping()
                conn.flush()
                ping_at = now
                ping_rx = conn.rx
            if len(self._in) >= self.queue_len:
                sleep_ms(IDLE_MS)  # the loop has not fetched what came: read no more yet
            if conn.held or conn.readable(0 if item is not None else IDLE_MS):
                op = self._client.check_msg()  # one packet; a PUBLISH goes to _received
                conn.flush()  # the PUBACK of a QoS 1 PUBLISH
                if op is not None:
                    raise LinkDown("unexpected packet type 0x{:02x}".format(op))

    def _goodbye(self, conn):
        """stop() while connected: send what is queued, then DISCONNECT (best effort; a failure
        here ends the link all the same)."""
        while True:
            item = self._at(self._out, 0)
            if item is None:
                break
            self._send(conn, item)
            self._lock.acquire()
            try:
                self._out.pop(0)
            finally:
                self._lock.release()
        self._client.disconnect()
