"""firmware/mqtt.py never stalls the control loop, on CPython and on the MicroPython unix port.

Every case runs real processes on loopback with bounded time-outs: a broker -- a stand-in
written here (STANDIN, its own process so that it can be killed) or Mosquitto through
tests/brokers.py -- and a probe in the control loop's shape (PROBE): one pass every 2 ms
(firmware/app.py LOOP_MS) calling `Uplink.poll()`, measuring the longest gap between two passes
while the transport connects, fails and reconnects. Under MicroPython the probe runs as the
simulator's firmware does: `micropython -X heapsize=128k` with firmware/, hal/ and umqtt/ mapped
from the ROMFS image that tools/build.py makes. The bound is issue 11's: < 20 ms.

Stand-ins (`python STANDIN --port P [options]`, prints "ready" once listening):
    --silent             accepts TCP and never answers (plain: no CONNACK; mqtts: the
                         ClientHello is never answered, the handshake stalls)
    (default)            a minimal MQTT 3.1.1 broker: CONNACK (--connack CODE), SUBACK, PUBACK,
                         PINGRESP (not with --no-pingresp); a PUBLISH goes back to the same client
                         if it subscribed to it; a PUBLISH on ctl/drop closes the connection;
                         the first QoS 1 PUBLISH on a topic ending in /lose closes it before
                         the PUBACK
    --tls CERT KEY       TLS in front (server side through MemoryBIOs);
    --trickle S          ... sending every handshake byte on its own, S seconds apart
"""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from host_sim.runner import boot_dir, build_for_micropython, rom_command
from tests import brokers
from tests.mpy import ROOT
from tools.build import image_with

pytestmark = pytest.mark.slow

INTERPRETERS = ("cpython", "micropython")
GAP_LIMIT_MS = 20.0  # issue 11, item 3: the longest gap between two control-loop passes
HEAP = "128k"
FIGURES = []  # (case, interpreter, figures) printed at the end of the module

STANDIN = r'''
import socket, ssl, sys, threading, time

opts = {"--port": "0", "--connack": "0", "--trickle": "0"}
flags = set()
argv = sys.argv[1:]
i = 0
while i < len(argv):
    if argv[i] in ("--silent", "--no-pingresp"):
        flags.add(argv[i]); i += 1
    elif argv[i] == "--tls":
        opts["cert"], opts["key"] = argv[i + 1], argv[i + 2]; i += 3
    else:
        opts[argv[i]] = argv[i + 1]; i += 2
CONNACK = int(opts["--connack"])
TRICKLE_S = float(opts["--trickle"])
CTX = None
if "cert" in opts:
    CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CTX.load_cert_chain(opts["cert"], opts["key"])
held = []  # silent connections stay open
lost = []  # topics whose first QoS 1 PUBLISH was swallowed (no PUBACK, connection closed)


class Plain:
    def __init__(self, sock):
        self.sock = sock

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            part = self.sock.recv(n - len(data))
            if not part:
                raise EOFError
            data += part
        return data

    def sendall(self, data):
        self.sock.sendall(data)


class Tls:
    """Server-side TLS through MemoryBIOs, so every byte of the handshake can be trickled."""

    def __init__(self, sock):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = CTX.wrap_bio(self.inc, self.out, server_side=True)
        self.buf = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush(TRICKLE_S)
                self.fill()
        self.flush(TRICKLE_S)

    def fill(self):
        data = self.sock.recv(4096)
        if not data:
            raise EOFError
        self.inc.write(data)

    def flush(self, trickle_s=0):
        data = self.out.read()
        if trickle_s:
            for k in range(len(data)):
                self.sock.sendall(data[k:k + 1])
                time.sleep(trickle_s)
        elif data:
            self.sock.sendall(data)

    def recv_exact(self, n):
        while len(self.buf) < n:
            try:
                self.buf += self.tls.read(4096)
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
            except ssl.SSLZeroReturnError:
                raise EOFError
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def sendall(self, data):
        self.tls.write(data)
        self.flush()


def packet(head, body):
    size, n = b"", len(body)
    while True:
        byte, n = n % 128, n // 128
        size += bytes([byte | (0x80 if n else 0)])
        if not n:
            return bytes([head]) + size + body


def matches(filt, topic):
    return filt == topic or filt == "#" or (filt.endswith("/#") and topic.startswith(filt[:-1]))


def broker(s):
    subs = []
    while True:
        head = s.recv_exact(1)[0]
        size = shift = 0
        while True:
            b = s.recv_exact(1)[0]
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = s.recv_exact(size) if size else b""
        kind = head >> 4
        if kind == 1:  # CONNECT
            s.sendall(bytes([0x20, 2, 0, CONNACK]))
            if CONNACK:
                return
        elif kind == 8:  # SUBSCRIBE
            granted, k = b"", 2
            while k < len(body):
                n = int.from_bytes(body[k:k + 2], "big")
                subs.append(body[k + 2:k + 2 + n].decode())
                granted += bytes([min(body[k + 2 + n], 1)])
                k += 3 + n
            s.sendall(packet(0x90, body[:2] + granted))
        elif kind == 3:  # PUBLISH
            n = int.from_bytes(body[:2], "big")
            topic, k = body[2:2 + n].decode(), 2 + n
            if (head >> 1) & 3:
                if topic.endswith("/lose") and topic not in lost:
                    lost.append(topic)
                    return  # the link dies before the PUBACK
                s.sendall(packet(0x40, body[k:k + 2]))
                k += 2
            if topic == "ctl/drop":
                return
            if any(matches(f, topic) for f in subs):
                s.sendall(packet(0x30, body[:2 + n] + body[k:]))
        elif kind == 12 and "--no-pingresp" not in flags:  # PINGREQ
            s.sendall(b"\xd0\x00")
        elif kind == 14:  # DISCONNECT
            return


def serve(conn):
    if "--silent" in flags:
        held.append(conn)
        while conn.recv(4096):
            continue  # read and drop, so the client's writes never block
        return
    try:
        broker(Tls(conn) if CTX else Plain(conn))
    except (EOFError, OSError, ssl.SSLError) as e:
        print("connection ended:", type(e).__name__, e, file=sys.stderr)
    finally:
        conn.close()


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(opts["--port"])))
srv.listen(16)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

PROBE = r'''
"""The control loop's shape around an Uplink (tests/test_mqtt_transport.py): JSON lines out."""
import gc
import json
import sys

from hal.compat import sleep_ms, ticks_diff, ticks_ms, ticks_us

LOOP_MS = 2


def say(**kw):
    print(json.dumps(kw))


def heap():
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def main(args):
    with open(args[0]) as f:  # a file: this unix port dies on an argument of 256+ characters
        o = json.load(f)
    before = heap()
    from firmware.mqtt import Uplink

    imported = heap()
    will = (o["will"], b"offline", True, 1) if o.get("will") else None
    up = Uplink(o["url"], o.get("client_id", "probe"), user=o.get("user"),
                password=o.get("password"), ca_file=o.get("ca"),
                keepalive_s=o.get("keepalive_s", 30), will=will,
                timeout_s=o.get("timeout_s", 10), backoff_ms=tuple(o["backoff_ms"]))
    if o.get("sub"):
        up.subscribe(o["sub"], 1)
    if o.get("birth"):
        up.birth(o["birth"], b"online", 1, True)
    made = heap()
    say(ev="heap", at="start", imported=imported - before, uplink=made - imported, base=made)
    up.start()
    t0 = ticks_ms()
    prev = ticks_us()
    worst = passes = asked = echoed = 0
    lose = o.get("lose")  # publish this QoS 1 message once, on the first connection
    end_ms = int(o.get("seconds", 5) * 1000)
    until = o.get("connects", 0)
    gc_ms = o.get("gc_ms", 0)  # collect as often as firmware/shell.py (GC_EVERY_MS) or more
    gc_at = ticks_ms()
    while True:
        now_us = ticks_us()
        gap = ticks_diff(now_us, prev)
        prev = now_us
        if gap > worst:
            worst = gap
        passes += 1
        now = ticks_ms()
        if gc_ms and ticks_diff(now, gc_at) >= gc_ms:
            gc_at = now
            gc.collect()
            prev = ticks_us()  # the probe's own gc.collect() is not the transport's
        item = up.poll()
        if item is not None and item[0] in ("connected", "disconnected"):
            say(ev="status", t=ticks_diff(now, t0), kind=item[0], reason=item[1],
                connects=up.connects, failures=up.failures, retry_ms=up.retry_ms)
        elif item is not None:
            text = item[1].decode()
            say(ev="msg", t=ticks_diff(now, t0), topic=item[0], payload=text)
            if item[0] == o.get("ask_in"):  # the backend asks: answer on answer_out
                up.publish(o["answer_out"], item[1], 1, False)
                echoed += 1
            if item[0] == o.get("echo_in") and text.startswith("echo "):
                echoed = max(echoed, int(text[5:]))
                if o.get("heap"):
                    say(ev="heap", at="echo", connects=echoed, heap=heap())
                    prev = ticks_us()  # the probe's own gc.collect() is not the transport's
                if o.get("drop"):
                    up.publish("ctl/drop", b"", 0, False)
        if lose and up.connected:
            up.publish(lose, b"once", 1, False)
            lose = None
        if o.get("echo_out") and up.connected and up.connects > asked:
            asked = up.connects
            up.publish(o["echo_out"], ("echo %d" % asked).encode(), 1, False)
        if until and echoed >= until:
            break
        if ticks_diff(now, t0) >= end_ms:
            break
        spent = ticks_diff(ticks_ms(), now)
        if spent < LOOP_MS:
            sleep_ms(LOOP_MS - spent)
    up.stop()
    t_stop = ticks_ms()
    while up.running and ticks_diff(ticks_ms(), t_stop) < 15000:
        sleep_ms(5)
    final = up.poll()
    say(ev="done", max_gap_ms=worst / 1000, passes=passes, connects=up.connects,
        failures=up.failures, lost=up.lost, stopped=not up.running, echoed=echoed,
        final=list(final) if final else None, stop_ms=ticks_diff(ticks_ms(), t_stop))


if __name__ == "__main__":
    main(sys.argv[1:])
'''


# -- processes -----------------------------------------------------------------------------
class Lines:
    """A process whose stdout is read by a thread; `next(timeout)` is the next line."""

    def __init__(self, argv, env, cwd, stderr_path):
        self._err = open(stderr_path, "wb")
        self.stderr_path = stderr_path
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True,
                                     start_new_session=True)
        self._q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def next(self, timeout):
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("nothing within {} s; stderr: {}".format(
                timeout, self.stderr())) from None
        if line is None:
            raise AssertionError("process ended (status {}); stderr: {}".format(
                self.proc.wait(5), self.stderr()))
        return line

    def stderr(self):
        self._err.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()
        self._err.close()


class StandIn:
    """The STANDIN broker as a process; start(), kill() and start() again on the same port."""

    def __init__(self, tmp_path, *args):
        self.script = str(tmp_path / "standin.py")
        with open(self.script, "w") as f:
            f.write(STANDIN)
        self.tmp_path = tmp_path
        self.args = [str(a) for a in args]
        self.port = brokers.free_port()
        self.lines = None

    def start(self):
        self.lines = Lines([sys.executable, self.script, "--port", str(self.port)] + self.args,
                           None, str(self.tmp_path), str(self.tmp_path / "standin.err"))
        assert self.lines.next(15) == "ready"
        return self

    def kill(self):
        if self.lines is not None:
            self.lines.kill()
            self.lines = None


class Probe:
    """PROBE on one interpreter; `events` are the JSON lines so far."""

    def __init__(self, interpreter, rom, tmp_path, **opts):
        opts.setdefault("backoff_ms", [200, 800])
        arg = str(tmp_path / "probe.json")
        with open(arg, "w") as f:
            json.dump(opts, f)
        if interpreter == "cpython":
            path = str(tmp_path / "mqtt_probe.py")
            with open(path, "w") as f:
                f.write(PROBE)
            env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
            argv, cwd = [sys.executable, path, arg], ROOT
        else:
            out, image = rom
            argv, env = rom_command(out, image, "mqtt_probe", [arg], HEAP)
            cwd = boot_dir(out)
        self.interpreter = interpreter
        self.events = []
        self.lines = Lines(argv, env, cwd, str(tmp_path / "probe.err"))

    def next(self, timeout=30):
        ev = json.loads(self.lines.next(timeout))
        self.events.append(ev)
        return ev

    def wait(self, pred, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.1, deadline - time.monotonic()))
            if pred(ev):
                return ev
            if time.monotonic() > deadline:
                raise AssertionError("not seen within {} s; events: {}".format(
                    timeout, self.events[-10:]))

    def done(self, timeout=60):
        """The final record; the probe ended by itself and its transport thread stopped."""
        ev = self.wait(lambda e: e["ev"] == "done", timeout)
        assert self.lines.proc.wait(15) == 0, self.lines.stderr()
        assert ev["stopped"], ev
        assert ev["final"] == ["disconnected", "stopped"], ev
        return ev

    def status(self, kind=None):
        return [e for e in self.events if e["ev"] == "status" and kind in (None, e["kind"])]

    def kill(self):
        self.lines.kill()


@pytest.fixture(scope="module")
def rom(tmp_path_factory):
    """The image (firmware, hal, umqtt) with the probe module in it."""
    out = str(tmp_path_factory.mktemp("mqtt_rom"))
    build_for_micropython(out)
    src = os.path.join(out, "mqtt_probe.py")
    with open(src, "w") as f:
        f.write(PROBE)
    return out, image_with(out, "mqtt_probe", src)


@pytest.fixture
def cleanup():
    """Processes to kill whatever happens in the test."""
    procs = []
    yield procs
    for p in procs:
        p.kill()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A CA and a server certificate for localhost / 127.0.0.1; another CA; a certificate for
    another name from the first CA."""
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    good = brokers.make_tls(folder / "good")
    other = brokers.make_tls(folder / "other")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca3.crt"))
    wrong = ca.issue_cert("broker.example")
    wrong.cert_chain_pems[0].write_to_path(str(folder / "wrong.crt"))
    wrong.private_key_pem.write_to_path(str(folder / "wrong.key"))
    return {"good": good, "other_ca": other.ca, "wrong_name": (folder / "ca3.crt",
                                                               folder / "wrong.crt",
                                                               folder / "wrong.key")}


def _probe(interpreter, rom, tmp_path, cleanup, **opts):
    p = Probe(interpreter, rom, tmp_path, **opts)
    cleanup.append(p)
    return p


def _standin(tmp_path, cleanup, *args):
    s = StandIn(tmp_path, *args).start()
    cleanup.append(s)
    return s


def _gap_ok(case, p, done, **extra):
    figures = dict(max_gap_ms=done["max_gap_ms"], passes=done["passes"],
                   connects=done["connects"], **extra)
    FIGURES.append((case, p.interpreter, figures))
    print("{} [{}]: {}".format(case, p.interpreter, figures))
    # the < 20 ms bound holds the MicroPython firmware (the device target); the CPython probe
    # on a shared 2-core runner gets 50 ms, as in tests/test_uplink_resilience.py (24 ms seen
    # there with the suite's other workers running)
    limit = GAP_LIMIT_MS if p.interpreter == "micropython" else 50.0
    assert done["max_gap_ms"] < limit, (case, done)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if FIGURES:
        print("\nloop gaps (ms) per stand-in and interpreter:")
        for case, interp, fig in FIGURES:
            print("  {:<28} {:<12} {}".format(case, interp, fig))


# -- fast checks of the pieces (CPython) ----------------------------------------------------
def test_broker_urls():
    from firmware.mqtt import parse_url

    assert parse_url("mqtt://broker") == ("mqtt", "broker", 1883)
    assert parse_url("mqtts://broker.example:8884") == ("mqtts", "broker.example", 8884)
    assert parse_url("mqtts://[::1]:9000") == ("mqtts", "::1", 9000)
    for bad in ("http://x", "mqtt://", "mqtt://h:0", "mqtt://h:x", "mqtt://u:p@h", "mqtt://h/t",
                "broker:1883"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_uplink_refuses_an_unverifiable_configuration(tls):
    from firmware.mqtt import Uplink

    with pytest.raises(ValueError, match="needs ca_file"):
        Uplink("mqtts://localhost", "cp")
    with pytest.raises(ValueError, match="use mqtts"):
        Uplink("mqtt://localhost", "cp", ca_file=str(tls["good"].ca))
    with pytest.raises(ValueError, match="keepalive_s"):
        Uplink("mqtt://localhost", "cp", keepalive_s=0)
    up = Uplink("mqtt://localhost", "cp", backoff_ms=(1000, 60000))
    with pytest.raises(ValueError, match="qos"):
        up.publish("t", b"x", 2)
    with pytest.raises(ValueError, match="topic"):
        up.subscribe("t" * 121)


def test_ca_file_pem_becomes_der(tls):
    import ssl

    from firmware.mqtt import ca_certificates

    with open(tls["good"].ca, "rb") as f:
        pem = f.read()
    ders = ca_certificates(pem)
    assert len(ders) == 1 and ders[0] == ssl.PEM_cert_to_DER_cert(pem.decode())
    assert ca_certificates(pem + pem) == ders * 2
    assert ca_certificates(ders[0]) == ders


def test_publish_queue_is_bounded_and_backoff_doubles_with_jitter():
    from firmware.mqtt import Uplink

    up = Uplink("mqtt://localhost", "cp", queue_len=3, backoff_ms=(1000, 60000))
    assert [up.publish("t", b"%d" % i, 1) for i in range(4)] == [True, True, True, False]
    assert up.pending() == 3 and up.poll() is None
    waits = []
    for failures in (0, 1, 2, 3, 6, 7, 30):
        up.failures = failures
        waits.append(up._backoff())
    for got, base in zip(waits, (1000, 1000, 2000, 4000, 32000, 60000, 60000), strict=True):
        assert 0.75 * base <= got <= 1.25 * base, (got, base)


# -- stand-ins: the loop never waits -------------------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("scheme", ["mqtt", "mqtts"])
@pytest.mark.parametrize("gc_ms", [0, 300], ids=["no-gc", "gc-300ms"])
def test_a_broker_that_accepts_and_never_answers(interpreter, scheme, gc_ms, rom, tls,
                                                 tmp_path, cleanup):
    """TCP accepted, then silence: no CONNACK (mqtt) or no ServerHello (mqtts). Every attempt
    ends by the 1 s time-out; the loop keeps its 2 ms pace throughout. With gc_ms the loop
    collects every 300 ms, as the shell does (every 1000 ms): on the MicroPython unix port
    gc.collect() interrupts the transport thread's blocking reads, which a socket time-out
    (SO_RCVTIMEO, restarted with each retry) did not survive -- the attempt then hung
    instead of ending after 1 s, and this case saw no failed attempt at all."""
    s = _standin(tmp_path, cleanup, "--silent")
    ca = str(tls["good"].ca) if scheme == "mqtts" else None
    p = _probe(interpreter, rom, tmp_path, cleanup, url="{}://localhost:{}".format(
        scheme, s.port), ca=ca, timeout_s=1, backoff_ms=[200, 400], seconds=3.5,
        gc_ms=gc_ms)
    done = p.done()
    downs = p.status("disconnected")
    reasons = [e["reason"] for e in downs]
    stage = "tls: " if scheme == "mqtts" else "connect: "
    assert len(reasons) >= 2 and all(r.startswith(stage) for r in reasons), reasons
    assert done["connects"] == 0
    # the first attempt starts at once and must end by its 1 s time-out (+ slack for the
    # connect and, mqtts, the CA and handshake set-up on a loaded runner)
    assert downs[0]["t"] < 2000, downs
    _gap_ok("silent {}{}".format(scheme, " gc" if gc_ms else ""), p, done,
            attempts=len(reasons))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_tls_handshake_one_byte_at_a_time(interpreter, rom, tls, tmp_path, cleanup):
    """Every byte of the server's handshake 2 ms apart: the handshake takes seconds, in the
    transport's thread; the certificate is verified (CA and name) and the link works."""
    good = tls["good"]
    s = _standin(tmp_path, cleanup, "--tls", good.cert, good.key, "--trickle", "0.002")
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtts://localhost:{}".format(s.port),
               ca=str(good.ca), timeout_s=5, sub="mpevse/probe/down/#",
               echo_out="mpevse/probe/down/echo", echo_in="mpevse/probe/down/echo",
               connects=1, seconds=40, heap=True)
    up = p.wait(lambda e: e["ev"] == "status", 40)
    assert up["kind"] == "connected", up
    done = p.done()
    assert done["echoed"] == 1
    start = [e for e in p.events if e.get("at") == "start"][0]
    connected = [e for e in p.events if e.get("at") == "echo"][0]
    _gap_ok("tls trickled 2 ms/byte", p, done, handshake_ms=up["t"],
            uplink_cost=start["uplink"], working_heap=connected["heap"] - start["base"])


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("case", ["other_ca", "wrong_name"])
def test_a_broker_that_cannot_be_verified_is_refused(interpreter, case, rom, tls, tmp_path,
                                                     cleanup):
    if case == "other_ca":
        cert, key, ca = tls["good"].cert, tls["good"].key, tls["other_ca"]
    else:
        ca, cert, key = tls["wrong_name"]
    s = _standin(tmp_path, cleanup, "--tls", cert, key)
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtts://localhost:{}".format(s.port),
               ca=str(ca), timeout_s=2, backoff_ms=[200, 400], seconds=1.5)
    done = p.done()
    reasons = [e["reason"] for e in p.status("disconnected")]
    assert reasons and all(r.startswith("tls: ") for r in reasons), reasons
    assert done["connects"] == 0
    print(interpreter, case, reasons[0])


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_broker_killed_mid_session(interpreter, rom, tmp_path, cleanup):
    """SIGKILL the broker while connected, restart it 0.3 s later on the same port: the
    transport reconnects within its back-off, subscribes again (the echo proves it) and
    the loop never waits."""
    s = _standin(tmp_path, cleanup)
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtt://127.0.0.1:{}".format(s.port),
               sub="mpevse/probe/down/#", echo_out="mpevse/probe/down/echo",
               echo_in="mpevse/probe/down/echo", backoff_ms=[200, 800], connects=3,
               seconds=30)
    for k in (1, 2):
        p.wait(lambda e, k=k: e["ev"] == "msg" and e["payload"] == "echo {}".format(k))
        s.kill()
        time.sleep(0.3)
        s.start()
    done = p.done()
    assert done["echoed"] == 3 and done["connects"] == 3
    reasons = [e["reason"] for e in p.status("disconnected")]
    assert reasons.count("link: closed by the broker") + sum(
        "ECONNRESET" in r or "reset" in r for r in reasons) >= 2, reasons
    _gap_ok("broker killed x2", p, done)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_qos1_message_without_puback_is_sent_again(interpreter, rom, tmp_path, cleanup):
    """The link dies after a QoS 1 PUBLISH and before its PUBACK: the message stays queued and
    goes out again on the next connection (then it is acknowledged and delivered)."""
    s = _standin(tmp_path, cleanup)
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtt://127.0.0.1:{}".format(s.port),
               sub="mpevse/probe/down/#", lose="mpevse/probe/down/lose",
               backoff_ms=[100, 200], seconds=10)
    p.wait(lambda e: e["ev"] == "msg" and e["topic"] == "mpevse/probe/down/lose", 10)
    down = p.status("disconnected")
    assert down and down[0]["reason"] == "link: closed by the broker", down
    assert down[0]["connects"] == 1
    assert p.status("connected")[-1]["connects"] == 2


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_a_broker_that_stops_answering_pings(interpreter, rom, tmp_path, cleanup):
    """Connected, then no PINGRESP: with keepalive 1 s the stall is declared within ~1.5 s and
    the transport reconnects."""
    s = _standin(tmp_path, cleanup, "--no-pingresp")
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtt://127.0.0.1:{}".format(s.port),
               keepalive_s=1, timeout_s=2, backoff_ms=[100, 200], seconds=4)
    done = p.done()
    reasons = [e["reason"] for e in p.status("disconnected")]
    assert "link: no PINGRESP within 1 s" in reasons, reasons
    assert done["connects"] >= 2
    _gap_ok("no PINGRESP (keepalive 1 s)", p, done)


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("code,text", [(4, "bad user name or password"), (5, "not authorized")])
def test_refused_credentials_back_off(interpreter, code, text, rom, tmp_path, cleanup):
    """CONNACK 4/5: a clear reason each time, waits doubling to the cap, no crash loop."""
    s = _standin(tmp_path, cleanup, "--connack", code)
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtt://127.0.0.1:{}".format(s.port),
               user="cp", password="wrong", backoff_ms=[100, 400], seconds=2.5)
    done = p.done()
    down = p.status("disconnected")
    assert down and {e["reason"] for e in down} == {"refused: {} ({})".format(text, code)}
    # at 0, then ~100, 100, 200, 400, 400, ... ms apart (+-25 %): 6..10 attempts in 2.5 s
    assert 6 <= done["failures"] <= 10, done
    assert max(e["retry_ms"] for e in down) <= 500
    assert done["connects"] == 0


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_heap_is_flat_across_50_reconnects(interpreter, rom, tmp_path, cleanup):
    """50 connections, each subscribing, echoing a QoS 1 message, then dropped by the broker:
    the heap measured at the 50th echo equals the heap at the 1st (MicroPython)."""
    s = _standin(tmp_path, cleanup)
    p = _probe(interpreter, rom, tmp_path, cleanup, url="mqtt://127.0.0.1:{}".format(s.port),
               sub="mpevse/probe/down/#", echo_out="mpevse/probe/down/echo",
               echo_in="mpevse/probe/down/echo", backoff_ms=[40, 80], connects=50,
               heap=True, drop=True, seconds=60)
    done = p.done(90)
    assert done["echoed"] == 50 and done["connects"] >= 50
    heaps = {e["connects"]: e["heap"] for e in p.events if e["ev"] == "heap" and "heap" in e}
    start = [e for e in p.events if e.get("at") == "start"][0]
    figures = dict(heap_1st=heaps.get(1), heap_50th=heaps.get(50), import_cost=start["imported"],
                   uplink_cost=start["uplink"])
    if interpreter == "micropython":
        # steady from the 2nd connection on (the 1st has no "disconnected" reason to hold yet);
        # the conservative GC makes the figure alternate by a few 32-byte blocks (stale words
        # in the transport thread's frames, depending on where the sample catches it; CI saw
        # 22336..22432). So compare the means of the first and last ten samples, 40
        # connections apart: a leak of even 16 B per connection moves them by 640 B
        series = [heaps[k] for k in range(2, 51)]
        drift = sum(series[-10:]) / 10 - sum(series[:10]) / 10
        assert drift <= 32 and max(series) - min(series) <= 128, (figures, series)
        figures["working_heap"] = heaps[50] - start["base"]  # conservative GC: a stale word at most
    _gap_ok("50 reconnects", p, done, **figures)


# -- Mosquitto (tests/brokers.py): the real thing ------------------------------------------
@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize("secure", [False, True], ids=["mqtt", "mqtts"])
def test_mosquitto_qos1_both_ways_and_reconnects(interpreter, secure, rom, tmp_path, cleanup):
    """The charge point CP-A against Mosquitto as deployed (tools/mosquitto: password file, ACL,
    TLS): the backend (paho, user bridge) sees the retained birth message, its QoS 1 question
    on CP-A's downlink reaches the charge point, whose QoS 1 answer reaches the backend; after
    the broker is killed and after it is restarted the transport reconnects, subscribes again
    and both directions work again."""
    with brokers.mosquitto(tmp_path, tls=secure) as broker:
        host = "localhost" if secure else broker.host
        p = _probe(interpreter, rom, tmp_path, cleanup,
                   url="{}://{}:{}".format("mqtts" if secure else "mqtt", host, broker.port),
                   ca=str(broker.ca) if secure else None, client_id="CP-A", user="CP-A",
                   password=broker.password("CP-A"), will="mpevse/CP-A/availability",
                   birth="mpevse/CP-A/availability", sub="mpevse/CP-A/down/#",
                   ask_in="mpevse/CP-A/down/ask", answer_out="mpevse/CP-A/up/answer",
                   backoff_ms=[200, 800], connects=3, seconds=60)
        for k in (1, 2, 3):
            p.wait(lambda e, k=k: e["ev"] == "status" and e["kind"] == "connected"
                   and e["connects"] == k, 30)
            with brokers.MqttClient(broker, brokers.BACKEND) as backend:
                backend.subscribe("mpevse/CP-A/#", 1)
                avail = backend.wait_for("mpevse/CP-A/availability", 20)
                assert avail.payload == b"online" and avail.retain
                ask = "ask {}".format(k).encode()
                assert backend.publish("mpevse/CP-A/down/ask", ask, qos=1) == 0
                p.wait(lambda e, ask=ask: e["ev"] == "msg" and e["payload"] == ask.decode())
                answer = backend.wait_for("mpevse/CP-A/up/answer", 20)
                assert answer.payload == ask and answer.qos == 1
            if k == 1:
                broker.kill()
                time.sleep(0.3)
                broker.start()
            elif k == 2:
                broker.restart()
        done = p.done()
    assert done["echoed"] == 3 and done["connects"] == 3 and done["lost"] == 0
    _gap_ok("mosquitto {} kill+restart".format("mqtts" if secure else "mqtt"), p, done)


def test_clock_sync_runs_in_the_transport_thread_after_each_connection(tmp_path):
    """Issue 11 item 9: the board's NTP (blocking: DNS + UDP) runs in the transport's thread
    once the network is up, never in the control loop; a failure is kept, the link goes on."""
    from firmware.mqtt import Uplink

    calls = []

    def ntp():  # stands in for Esp32Board.sync_clock
        calls.append(threading.get_ident())
        if len(calls) == 1:
            raise OSError(110, "ETIMEDOUT")  # the first NTP try found no server
        return True

    with brokers.mosquitto(tmp_path) as broker:
        up = Uplink(broker.url, "CP-A", user="CP-A", password=broker.users["CP-A"],
                    clock_sync=ntp, backoff_ms=(100, 400))
        up.start()
        try:
            seen = []
            deadline = time.monotonic() + 20
            while len(seen) < 2 and time.monotonic() < deadline:
                item = up.poll()
                if item == ("connected", ""):
                    seen.append(item)
                    if len(seen) == 1:  # a broker restart: connected again, synced again
                        broker.restart()
                time.sleep(0.01)
            assert len(seen) == 2, "not connected twice: {}".format(up.reason)
            assert calls and all(t != threading.get_ident() for t in calls)
            assert len(calls) >= 2
            assert up.clock_error and "ETIMEDOUT" in up.clock_error
        finally:
            up.stop()
