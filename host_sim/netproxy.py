"""The simulated charge point's network: a TCP proxy on loopback between the firmware and its
MQTT broker, which the console can cut (`broker down`), black-hole (`broker stall`) and
restore (`broker up`) without touching the broker itself.

The firmware's config.json points at the proxy (`Simulation` writes uplink.url); every
connection the firmware opens to it is forwarded to the broker as its own upstream
connection, byte for byte (TLS passes through untouched: the firmware's handshake is with the
broker). States:

    up      bytes flow both ways; a new connection is connected upstream when accepted (if
            the broker cannot be reached, the firmware's connection is reset)
    down    the network is gone: every proxied connection is closed abruptly (RST to the
            firmware and to the broker) and new connections are refused (the port is held
            by a bound socket that does not listen, so the kernel refuses, and nothing else
            can take the port meanwhile)
    stall   a black hole: nothing passes either way and nothing is closed. Connections that
            were up freeze (their bytes wait in the socket buffers, none is lost); new ones
            are accepted and never forwarded (not even connected upstream). `up` again:
            the frozen ones resume (a network that came back before TCP gave up), the ones
            accepted during the stall are reset (their handshake never got through)

One thread runs the proxy (poll() on every socket plus a wake-up socketpair for state
changes); `set_state` hands the change to it and waits (bounded) until it is done, so the
caller's event comes after the change. The thread stamps connection open/close with `clock`
into a queue the runner drains (`drain_events`); should the thread ever fail, its last event is
{"failed": repr(exception)} and every later `set_state` raises ProxyError. At most
MAX_CONNECTIONS connections at once (more are reset on accept), at most MAX_BUFFER bytes held
per direction (reading stops until the other side takes them). `close()` closes everything
and joins the thread, bounded.
"""

import errno
import ipaddress
import select
import socket
import struct
import threading
from collections import deque

STATES = ("up", "down", "stall")
SCHEMES = {"mqtt": 1883, "mqtts": 8883}
MAX_CONNECTIONS = 32
MAX_BUFFER = 256 * 1024  # bytes held per direction before the proxy stops reading
CHUNK = 64 * 1024
POLL_MS = 500  # the thread's longest sleep; state changes wake it at once
COMMAND_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 5.0
MAX_EVENTS = 10000  # undrained events kept (oldest dropped): a runner that never drains

_READ = select.POLLIN
_WRITE = select.POLLOUT
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL


class ProxyError(Exception):
    """The proxy could not start, or its thread is gone (the message says which)."""


def parse_broker_url(url):
    """(scheme, host, port) of `mqtt://HOST[:PORT]` / `mqtts://HOST[:PORT]` (default ports
    1883 / 8883); ValueError naming the rule otherwise. The firmware's config check is the
    same (firmware.config): a host name or IPv4 address, no path, no IPv6 literal."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError("broker URL must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]: "
                         "{!r}".format(url))
    scheme, rest = url.split("://", 1)
    if scheme not in SCHEMES:
        raise ValueError("broker URL scheme must be mqtt or mqtts: {!r}".format(url))
    host, sep, port = rest.partition(":")
    if not host or "/" in rest or "[" in rest or "@" in rest or any(c.isspace() for c in rest):
        raise ValueError("broker URL must be {}://HOST[:PORT] (no path, user or IPv6 "
                         "literal): {!r}".format(scheme, url))
    if not sep:
        return scheme, host, SCHEMES[scheme]
    if not port.isdigit() or not port.isascii() or not 1 <= int(port) <= 65535:
        raise ValueError("broker port must be 1..65535: {!r}".format(url))
    return scheme, host, int(port)


def resolve(host, port):
    """The addresses `host` resolves to for TCP, in the resolver's order; ValueError if none."""
    try:
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise ValueError("cannot resolve broker host {!r}: {}".format(host, e)) from None
    out = [(family, addr) for family, _, _, _, addr in infos
           if family in (socket.AF_INET, socket.AF_INET6)]
    if not out:
        raise ValueError("broker host {!r} has no IPv4/IPv6 address".format(host))
    return out


def is_loopback(addresses):
    return all(ipaddress.ip_address(addr[0].split("%")[0]).is_loopback for _, addr in addresses)


class _Conn:
    """One proxied connection: the firmware's socket and its upstream twin."""

    __slots__ = ("n", "client", "upstream", "connecting", "to_up", "to_client", "client_eof",
                 "up_eof", "frozen")

    def __init__(self, n, client):
        self.n = n
        self.client = client
        self.upstream = None
        self.connecting = False
        self.to_up = bytearray()
        self.to_client = bytearray()
        self.client_eof = False  # the firmware closed its side: flush to the broker, close
        self.up_eof = False  # the broker closed its side: flush to the firmware, close
        self.frozen = False  # accepted during a stall: never forwarded; reset on `up`


class NetProxy:
    """A loopback TCP proxy to `upstream` (family, address) with up/down/stall (module doc)."""

    def __init__(self, upstream, listen=("127.0.0.1", socket.AF_INET), clock=None,
                 max_connections=MAX_CONNECTIONS):
        self.upstream = upstream
        self.listen_host, self.listen_family = listen
        self.clock = clock
        self.max_connections = max_connections
        self.state = "up"
        self.port = None
        self.stats = {"accepted": 0, "reset_on_accept": 0, "upstream_failed": 0,
                      "bytes_up": 0, "bytes_down": 0}
        self._lock = threading.Lock()  # stats, events, the command queue
        self._events = deque(maxlen=MAX_EVENTS)
        self._commands = deque()
        self._conns = []
        self._next_id = 0
        self._listener = None
        self._holder = None  # bound, not listening: holds the port while down
        self._wake_r = self._wake_w = None
        self._thread = None
        self._closing = False
        self.failure = None  # the exception that ended the thread, if any

    # -- caller's side ----------------------------------------------------------------------
    def start(self):
        """Bind a free port on the listen address and start the thread; ProxyError if not."""
        try:
            self._listener = self._bound(0)
            self._listener.listen(16)
            self.port = self._listener.getsockname()[1]
            self._wake_r, self._wake_w = socket.socketpair()
            for s in (self._listener, self._wake_r, self._wake_w):
                s.setblocking(False)
        except OSError as e:
            self._close_sockets()
            raise ProxyError("cannot open the network proxy on {}: {}".format(
                self.listen_host, e)) from None
        self._thread = threading.Thread(target=self._run, name="netproxy", daemon=True)
        self._thread.start()
        return self

    def set_state(self, state, timeout_s=COMMAND_TIMEOUT_S):
        """Switch to up|down|stall; returns {"state", "connections" (open before the change),
        "closed" (connections this change reset)} once the thread has done it."""
        if state not in STATES:
            raise ValueError("network state must be one of {}: {!r}".format(
                "|".join(STATES), state))
        return self._call(("state", state), timeout_s)

    def status(self):
        """Counters and open connections, for the runner's `status`."""
        with self._lock:
            out = dict(self.stats)
            out["state"] = self.state
            out["port"] = self.port
            out["connections"] = len(self._conns)
        return out

    def drain_events(self):
        """[(t, fields)] since the last call: connection open/close, stamped by the thread."""
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def close(self, timeout_s=JOIN_TIMEOUT_S):
        """Stop the thread (bounded) and close every socket; safe to call twice."""
        self._closing = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wake()
            thread.join(timeout_s)
        if thread is None or not thread.is_alive():
            self._close_sockets()
        self._thread = None

    def _call(self, command, timeout_s):
        if self._thread is None or not self._thread.is_alive():
            raise ProxyError("the network proxy is not running{}".format(
                "" if self.failure is None else ": {!r}".format(self.failure)))
        done = threading.Event()
        slot = {}
        with self._lock:
            self._commands.append((command, done, slot))
        self._wake()
        if not done.wait(timeout_s):
            raise ProxyError("the network proxy did not answer within {} s{}".format(
                timeout_s, "" if self.failure is None else ": {!r}".format(self.failure)))
        if "error" in slot:
            raise slot["error"]
        return slot["result"]

    def _wake(self):
        w = self._wake_w
        if w is None:
            return  # never started, or already closed
        try:
            w.send(b"x")
        except BlockingIOError:
            return  # the pipe is full: the thread is awake anyway
        except OSError as e:
            if e.errno not in (errno.EBADF, errno.EPIPE, errno.ECONNRESET):
                raise

    # -- the thread -------------------------------------------------------------------------
    def _run(self):
        try:
            while not self._closing:
                self._step()
        except Exception as e:  # noqa: BLE001 - reported (event, ProxyError), then it ends
            self.failure = e
            with self._lock:
                self._events.append((self.clock() if self.clock is not None else None,
                                     {"failed": repr(e)}))
        finally:
            for conn in list(self._conns):
                self._drop(conn, "closed", abrupt=True)
            self._close_sockets()
            self._fail_commands()

    def _step(self):
        poller = select.poll()
        fds = {}

        def watch(sock, mask, what):
            if mask:
                poller.register(sock.fileno(), mask)
                fds[sock.fileno()] = what

        watch(self._wake_r, _READ, ("wake", None))
        if self._listener is not None and self.state != "down":
            watch(self._listener, _READ, ("accept", None))
        if self.state == "up":
            for conn in self._conns:
                watch(conn.client, self._client_mask(conn), ("client", conn))
                if conn.upstream is not None:
                    watch(conn.upstream, self._upstream_mask(conn), ("upstream", conn))
        ready = poller.poll(POLL_MS)
        for fd, mask in ready:
            what, conn = fds[fd]
            if what == "wake":
                self._drain_wake()
            elif what == "accept":
                self._accept()
            elif conn in self._conns:  # not dropped earlier in this round
                if what == "client":
                    self._client_ready(conn, mask)
                else:
                    self._upstream_ready(conn, mask)
        self._run_commands()

    @staticmethod
    def _client_mask(conn):
        mask = _WRITE if conn.to_client else 0
        if not conn.client_eof and len(conn.to_up) < MAX_BUFFER:
            mask |= _READ
        return mask

    @staticmethod
    def _upstream_mask(conn):
        if conn.connecting:
            return _WRITE
        mask = _WRITE if conn.to_up else 0
        if not conn.up_eof and len(conn.to_client) < MAX_BUFFER:
            mask |= _READ
        return mask

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                return
            raise
        client.setblocking(False)
        # a proxy forwards small MQTT packets as they come: Nagle + delayed ACK cost ~40 ms a hop
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_id += 1
        conn = _Conn(self._next_id, client)
        with self._lock:
            self.stats["accepted"] += 1
        if len(self._conns) >= self.max_connections:
            with self._lock:
                self.stats["reset_on_accept"] += 1
            self._note(conn, "open")
            _close(client, abrupt=True)
            self._note(conn, "closed", by="limit")
            return
        self._conns.append(conn)
        self._note(conn, "open")
        if self.state == "stall":
            conn.frozen = True
        else:
            self._connect_upstream(conn)

    def _connect_upstream(self, conn):
        family, addr = self.upstream
        up = socket.socket(family, socket.SOCK_STREAM)
        up.setblocking(False)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.upstream = up
        err = up.connect_ex(addr)
        if err in (0, errno.EISCONN):
            conn.connecting = False
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            conn.connecting = True
        else:
            self._upstream_failed(conn, err)

    def _upstream_failed(self, conn, err):
        with self._lock:
            self.stats["upstream_failed"] += 1
        self._drop(conn, "closed", abrupt=True, by="broker_unreachable",
                   error=errno.errorcode.get(err, str(err)))

    def _client_ready(self, conn, mask):
        if mask & _WRITE and conn.to_client:
            if not self._send(conn, conn.client, conn.to_client, "bytes_down"):
                return
        if mask & (_READ | _GONE) and not conn.client_eof:
            data = self._recv(conn, conn.client)
            if data is None:
                return
            if data is not _AGAIN:
                if data:
                    conn.to_up += data
                else:
                    conn.client_eof = True
        self._finish_if_done(conn)

    def _upstream_ready(self, conn, mask):
        if conn.connecting:  # the non-blocking connect finished, one way or the other
            err = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._upstream_failed(conn, err)
            else:
                conn.connecting = False
            return
        if mask & _WRITE and conn.to_up:
            if not self._send(conn, conn.upstream, conn.to_up, "bytes_up"):
                return
        if mask & (_READ | _GONE) and not conn.up_eof:
            data = self._recv(conn, conn.upstream)
            if data is None:
                return
            if data is not _AGAIN:
                if data:
                    conn.to_client += data
                else:
                    conn.up_eof = True
        self._finish_if_done(conn)

    def _recv(self, conn, sock):
        """Bytes read (b"" at EOF), _AGAIN if none are there yet, or None when the connection
        was reset (it is dropped then)."""
        try:
            return sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return _AGAIN
        except OSError as e:
            by = "firmware" if sock is conn.client else "broker"
            self._drop(conn, "closed", abrupt=True, by=by,
                       error=errno.errorcode.get(e.errno, str(e)))
            return None

    def _send(self, conn, sock, buf, counter):
        try:
            n = sock.send(buf)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as e:
            by = "firmware" if sock is conn.client else "broker"
            self._drop(conn, "closed", abrupt=True, by=by,
                       error=errno.errorcode.get(e.errno, str(e)))
            return False
        del buf[:n]
        with self._lock:
            self.stats[counter] += n
        return True

    def _finish_if_done(self, conn):
        """A side that closed ends the connection once what it sent has been passed on."""
        if conn.client_eof and not conn.to_up and not conn.connecting:
            self._drop(conn, "closed", by="firmware")
        elif conn.up_eof and not conn.to_client:
            self._drop(conn, "closed", by="broker")

    def _drop(self, conn, action, abrupt=False, **fields):
        if conn in self._conns:
            self._conns.remove(conn)
        _close(conn.client, abrupt)
        if conn.upstream is not None:
            _close(conn.upstream, abrupt)
        self._note(conn, action, **fields)

    def _note(self, conn, action, **fields):
        event = {"conn": conn.n, "action": action}
        event.update(fields)
        t = self.clock() if self.clock is not None else None
        with self._lock:
            self._events.append((t, event))

    def _drain_wake(self):
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            return

    def _run_commands(self):
        while True:
            with self._lock:
                if not self._commands:
                    return
                command, done, slot = self._commands.popleft()
            try:
                slot["result"] = self._apply(*command)
            except (OSError, ValueError) as e:
                slot["error"] = ProxyError("network {}: {}".format(command[1], e))
            done.set()

    def _fail_commands(self):
        with self._lock:
            pending = list(self._commands)
            self._commands.clear()
        for _, done, slot in pending:
            slot["error"] = ProxyError("the network proxy stopped{}".format(
                "" if self.failure is None else ": {!r}".format(self.failure)))
            done.set()

    def _apply(self, what, state):
        before = len(self._conns)
        closed = 0
        with self._lock:
            self.state = state
        if state == "down":
            for conn in list(self._conns):
                self._drop(conn, "closed", abrupt=True, by="down")
                closed += 1
            self._hold_port()
            return {"state": state, "connections": before, "closed": closed}
        self._release_port()  # up and stall both accept (a stall never forwards)
        if state == "up":
            for conn in list(self._conns):
                if conn.frozen:  # its handshake never got through the black hole
                    self._drop(conn, "closed", abrupt=True, by="up")
                    closed += 1
        return {"state": state, "connections": before, "closed": closed}

    def _hold_port(self):
        """Refuse new connections: the listener goes and a bound socket that never listens
        keeps the port (the kernel refuses connections to it, and nobody else can take it).
        The port is free only between the two calls below, for microseconds."""
        if self._listener is None:
            return
        listener, self._listener = self._listener, None
        _close(listener)
        self._holder = self._bound(self.port)

    def _release_port(self):
        """Accept again: the holder listens (or, if holding failed, the port is bound anew)."""
        if self._listener is not None:
            return
        holder, self._holder = self._holder, None
        if holder is None:
            holder = self._bound(self.port)
        holder.listen(16)
        holder.setblocking(False)
        self._listener = holder

    def _bound(self, port):
        s = socket.socket(self.listen_family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.listen_host, port))
        except OSError:
            s.close()
            raise
        return s

    def _close_sockets(self):
        for name in ("_listener", "_holder", "_wake_r", "_wake_w"):
            s = getattr(self, name)
            if s is not None:
                _close(s)
                setattr(self, name, None)


_AGAIN = object()  # _recv: nothing to read yet


def _close(sock, abrupt=False):
    """Close `sock`; `abrupt`: with a reset (SO_LINGER 0) instead of an orderly FIN."""
    if abrupt:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError as e:
            if e.errno not in (errno.EBADF, errno.ENOTCONN, errno.EINVAL):
                raise
    sock.close()
