"""Real MQTT brokers for tests, started and stopped by the tests that use them (not a test file).

Two brokers, each its own process on loopback (127.0.0.1) on a free port, with bounded time-outs;
readiness is an MQTT CONNECT answered by a CONNACK, never a sleep:

- `mosquitto(tmp_path, tls=False, acl=True, users=None)`: Mosquitto, the deployment's broker,
  configured from tools/mosquitto itself: `mosquitto.conf` with its paths, listener, log and
  user replaced (every other line as shipped), the shipped `acl` file as it is, and a password
  file made by `mosquitto_passwd -U`. So the tests check the ACL a deployment gets.
- `amqtt_broker(tmp_path, tls=False, acl=False, users=None, port=None)`: the pure-Python
  embedded broker (PyPI `amqtt`) for `make demo` and machines without Mosquitto. With `users`
  it authenticates against an argon2 password file; with `acl` it gets the shipped ACL expanded
  per user. amqtt enforces an ACL on PUBLISH and on SUBSCRIBE (the subscription filter must lie
  inside an allowed one; a refused one gets SUBACK 0x80) but not on delivery, where Mosquitto
  checks every message it delivers instead (Mosquitto 2.0 grants every SUBSCRIBE).

Both yield a `Broker`: `.host`, `.port`, `.ca` (the CA file a TLS client trusts, else None),
`.users` (name -> password), `.url`, `.kill()` / `.stop()` / `.start()` / `.restart()` (same
port, same files: a broker crash or restart during a test), `.log_tail()`.

`MqttClient` (paho-mqtt) is the independent client a test uses as the backend or as a charge
point; `raw_connect` speaks MQTT 3.1.1 CONNECT by hand (exact CONNACK codes, last will by an
abrupt close). Certificates come from `trustme` (`make_tls`).

Mosquitto missing: `require_mosquitto()` skips with the reason, except under `CI=true`, where it
FAILS: CI must run the Mosquitto tests (`make test` installs it with apt-get where it can,
tools/mosquitto/install.sh). As pytest fixtures, in a test module:

    @pytest.fixture
    def broker(tmp_path):
        with brokers.mosquitto(tmp_path) as b:
            yield b
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MOSQUITTO_DIR = REPO / "tools" / "mosquitto"
SHIPPED_CONF = MOSQUITTO_DIR / "mosquitto.conf"
SHIPPED_ACL = MOSQUITTO_DIR / "acl"

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # amqtt's imports take about a second on an idle core; 2 shared cores
STOP_TIMEOUT = 5.0
IO_TIMEOUT = 5.0

# The backend's account in tools/mosquitto/acl, and two charge points (user name = cp_id).
BACKEND = "bridge"
DEFAULT_USERS = {BACKEND: "bridge-secret", "CP-A": "secret-a", "CP-B": "secret-b"}

# MQTT 3.1.1 CONNACK return codes
CONNACK_ACCEPTED = 0
CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5


class BrokerError(RuntimeError):
    """A broker did not start, or died, or a client could not talk to it in time."""


# -- Mosquitto present? --------------------------------------------------------------------
def _find(name: str) -> str | None:
    # Debian puts the broker in /usr/sbin, which is not on every user's PATH.
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def mosquitto_binary() -> str | None:
    return _find("mosquitto")


def mosquitto_passwd_binary() -> str | None:
    return _find("mosquitto_passwd")


def mosquitto_available() -> bool:
    """True if both `mosquitto` and `mosquitto_passwd` can be run."""
    return mosquitto_binary() is not None and mosquitto_passwd_binary() is not None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_mosquitto() -> None:
    """Skip the calling test without Mosquitto -- but under CI=true, fail it."""
    if mosquitto_available():
        return
    import pytest

    reason = (
        "mosquitto and mosquitto_passwd not found (PATH, /usr/sbin); `make test` installs them "
        "with apt-get when run as root (tools/mosquitto/install.sh)"
    )
    if in_ci():
        pytest.fail("CI must run the Mosquitto tests: " + reason, pytrace=False)
    pytest.skip(reason)


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# -- TLS material --------------------------------------------------------------------------
@dataclass
class TlsFiles:
    ca: Path  # the CA certificate a client trusts
    cert: Path  # the server's certificate chain (leaf first)
    key: Path  # the server's private key


def make_tls(folder: Path, names: tuple[str, ...] = ("localhost", HOST)) -> TlsFiles:
    """A fresh trustme CA and a server certificate for `names` (host names and IPs)."""
    import trustme

    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*names)
    files = TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    files.cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(files.key))
    return files


def client_context(ca: Path | str | None) -> ssl.SSLContext:
    """What a careful client does: verify the chain against `ca` and check the server's name."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- the shipped configuration -------------------------------------------------------------
@dataclass(frozen=True)
class AclRule:
    user: str | None  # `user NAME` block it belongs to; None for a `pattern` line (every user)
    access: str  # read, write, readwrite
    topic: str


def parse_acl(text: str) -> list[AclRule]:
    """The rules of a Mosquitto ACL file (the subset tools/mosquitto uses; else ValueError)."""
    rules = []
    user: str | None = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split(None, 2)
        if words[0] == "user" and len(words) == 2:
            user = words[1]
            continue
        if words[0] not in ("topic", "pattern") or len(words) != 3:
            raise ValueError("acl line {}: not understood: {!r}".format(n, raw))
        access, topic = words[1], words[2]
        if access not in ("read", "write", "readwrite"):
            # "deny" is on purpose not here: in Mosquitto it also denies reading.
            raise ValueError("acl line {}: access {!r}".format(n, access))
        if words[0] == "topic":
            if user is None:
                raise ValueError("acl line {}: topic line for anonymous clients".format(n))
            rules.append(AclRule(user, access, topic))
        else:
            if "%c" in topic:
                raise ValueError("acl line {}: %c (client id) patterns are not used".format(n))
            rules.append(AclRule(None, access, topic))
    return rules


def acl_for(rules: list[AclRule], user: str) -> dict[str, list[str]]:
    """{"read": [...], "write": [...]}: the topic filters `user` gets, patterns expanded."""
    out: dict[str, list[str]] = {"read": [], "write": []}
    for rule in rules:
        if rule.user is None:
            topic = rule.topic.replace("%u", user)
        elif rule.user == user:
            topic = rule.topic
        else:
            continue
        for access in ("read", "write"):
            if access in rule.access:
                out[access].append(topic)
    return out


# directives tests/brokers.py replaces; every other line of the shipped file is kept
_TLS_KEYS = ("cafile", "certfile", "keyfile", "require_certificate", "tls_version")


def render_mosquitto_conf(
    shipped: str,
    *,
    port: int,
    folder: Path,
    tls: TlsFiles | None,
    acl: bool,
    host: str = HOST,
) -> str:
    """The shipped mosquitto.conf made to run in `folder` on host:port as the current user."""
    out = ["# generated by tests/brokers.py from tools/mosquitto/mosquitto.conf"]
    listeners = 0
    for raw in shipped.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        if key == "listener":
            listeners += 1
            out.append("listener {} {}".format(port, host))
        elif key == "password_file":
            out.append("password_file " + str(folder / "passwd"))
        elif key == "acl_file":
            if acl:
                out.append("acl_file " + str(folder / "acl"))
        elif key == "persistence_location":
            out.append("persistence_location " + str(folder / "data"))
        elif key == "log_dest":
            out.append("log_dest file " + str(folder / "mosquitto.log"))
        elif key in ("user", "pid_file"):
            continue
        elif key in _TLS_KEYS:
            if tls is None:
                continue
            paths = {"cafile": tls.ca, "certfile": tls.cert, "keyfile": tls.key}
            out.append("{} {}".format(key, paths[key]) if key in paths else line)
        else:
            out.append(line)
    if listeners != 1:
        raise ValueError("shipped mosquitto.conf: 1 listener expected, {} found".format(listeners))
    # As root Mosquitto would switch to user "mosquitto", who cannot read pytest's tmp_path.
    out.append("user " + pwd.getpwuid(os.getuid()).pw_name)
    return "\n".join(out) + "\n"


# -- a running broker ----------------------------------------------------------------------
@dataclass
class Broker:
    kind: str  # "mosquitto" or "amqtt"
    host: str
    port: int
    users: dict[str, str]  # user name -> password (empty: anonymous clients allowed)
    ca: Path | None  # CA file for TLS clients; None: plain MQTT
    folder: Path  # configuration, password file, log, persistence
    argv: list[str]
    log: Path
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.ca is not None

    @property
    def url(self) -> str:
        return "{}://{}:{}".format("mqtts" if self.tls else "mqtt", self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def password(self, user: str) -> str:
        return self.users[user]

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the broker process (again) and return once it answers a CONNECT."""
        if self.running():
            raise BrokerError("{} already running (pid {})".format(self.kind, self.pid))
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.folder,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        ctx = client_context(self.ca) if self.ca else None
        assert self._proc is not None
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise BrokerError("{} exited with status {} while starting:\n{}".format(
                    self.kind, rc, self.log_tail()))
            try:
                sock, _code = raw_connect(
                    self.host, self.port, client_id="ready-probe", ssl_context=ctx,
                    timeout=min(2.0, max(0.1, deadline - time.monotonic())),
                )
                sock.close()
                return
            except (OSError, BrokerError) as e:
                last = e
            if time.monotonic() >= deadline:
                raise BrokerError(
                    "{} did not answer a CONNECT on {}:{} within {:.0f} s ({}):\n{}".format(
                        self.kind, self.host, self.port, timeout, last, self.log_tail()
                    )
                )
            # Not listening yet: wait for the process to exit or 20 ms, whichever comes first.
            try:
                self._proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                continue

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Orderly shutdown (SIGTERM), SIGKILL after `timeout`."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the broker dies as in a crash (no will messages sent, nothing saved)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)


def _start_on_free_port(make: Callable[[int], Broker], port: int | None) -> Broker:
    """Start a broker on `port`, or on a free port with two more tries if it was taken meanwhile."""
    tries = 1 if port else 3
    for attempt in range(tries):
        broker = make(port or free_port())
        try:
            broker.start()
            return broker
        except BrokerError as e:
            if attempt + 1 == tries or "in use" not in str(e).lower():
                raise
    raise AssertionError("unreachable")


# -- Mosquitto -----------------------------------------------------------------------------
@contextmanager
def mosquitto(
    tmp_path: Path,
    tls: bool = False,
    acl: bool = True,
    users: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Broker]:
    """A running Mosquitto configured from tools/mosquitto; stopped on exit.

    `users`: name -> password for the password file (default DEFAULT_USERS: "bridge", "CP-A",
    "CP-B"). `acl=False` leaves out the ACL (every authenticated client may do anything).
    `tls=True`: TLS listener with a fresh trustme CA (`broker.ca`), server name localhost and
    127.0.0.1. Skips (or, under CI=true, fails) the test if Mosquitto is not installed.
    """
    require_mosquitto()
    users = dict(DEFAULT_USERS if users is None else users)
    if not users:
        raise ValueError("the shipped configuration allows no anonymous clients: give users")
    folder = Path(tmp_path) / "mosquitto"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    tls_files = make_tls(folder / "tls") if tls else None
    write_password_file(folder / "passwd", users)
    if acl:
        shutil.copyfile(SHIPPED_ACL, folder / "acl")
    conf = folder / "mosquitto.conf"
    binary = mosquitto_binary()
    assert binary is not None

    def make(p: int) -> Broker:
        shipped = SHIPPED_CONF.read_text()
        conf.write_text(
            render_mosquitto_conf(shipped, port=p, folder=folder, tls=tls_files, acl=acl)
        )
        return Broker(
            "mosquitto", HOST, p, users, tls_files.ca if tls_files else None, folder,
            [binary, "-c", str(conf)], folder / "mosquitto.log",
        )

    broker = _start_on_free_port(make, port)
    try:
        yield broker
    finally:
        broker.stop()


def write_password_file(path: Path, users: dict[str, str]) -> None:
    """A Mosquitto password file: plain `user:password` lines hashed in place by `-U`."""
    for name, password in users.items():
        if not name or any(c in name for c in ":+#/\n") or "\n" in password:
            raise ValueError("user name {!r} cannot be a charge point's".format(name))
    path.write_text("".join("{}:{}\n".format(n, p) for n, p in users.items()))
    path.chmod(0o600)
    binary = mosquitto_passwd_binary()
    assert binary is not None
    done = subprocess.run(
        [binary, "-U", str(path)], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        raise BrokerError("mosquitto_passwd -U failed: " + (done.stderr or done.stdout))


# -- amqtt ---------------------------------------------------------------------------------
@contextmanager
def amqtt_broker(
    tmp_path: Path,
    tls: bool = False,
    acl: bool = False,
    users: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Broker]:
    """A running amqtt broker (its own Python process); stopped on exit.

    `users=None`: anonymous clients allowed (make demo). With `users`: only those, by password
    (argon2 file). `acl=True` (needs users): the shipped tools/mosquitto/acl expanded for each
    user, enforced by amqtt on PUBLISH and SUBSCRIBE. `tls=True`: as for `mosquitto`.
    """
    folder = Path(tmp_path) / "amqtt"
    folder.mkdir(parents=True, exist_ok=True)
    users = dict(users or {})
    if acl and not users:
        raise ValueError("an ACL needs users")
    tls_files = make_tls(folder / "tls") if tls else None
    plugins: dict[str, dict] = {}
    if users:
        from pwdlib import PasswordHash
        from pwdlib.hashers.argon2 import Argon2Hasher

        # Test passwords: a cheap argon2 cost (stored in each hash) so a CONNECT takes ~15 ms,
        # not ~200 ms as with pwdlib's defaults.
        hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),))
        pw_file = folder / "passwd"
        pw_file.write_text("".join("{}:{}\n".format(n, hasher.hash(p)) for n, p in users.items()))
        pw_file.chmod(0o600)
        plugins["amqtt.plugins.authentication.FileAuthPlugin"] = {"password_file": str(pw_file)}
    else:
        plugins["amqtt.plugins.authentication.AnonymousAuthPlugin"] = {"allow_anonymous": True}
    if acl:
        rules = parse_acl(SHIPPED_ACL.read_text())
        per_user = {name: acl_for(rules, name) for name in users}
        plugins["amqtt.plugins.topic_checking.TopicAccessControlListPlugin"] = {
            "publish_acl": {name: a["write"] for name, a in per_user.items()},
            "acl": {name: a["read"] for name, a in per_user.items()},  # subscribe
        }
    conf = folder / "amqtt.json"

    def make(p: int) -> Broker:
        listener: dict[str, object] = {"type": "tcp", "bind": "{}:{}".format(HOST, p)}
        if tls_files:
            listener.update(ssl=True, certfile=str(tls_files.cert), keyfile=str(tls_files.key))
        config = {"listeners": {"default": listener}, "plugins": plugins}
        conf.write_text(json.dumps(config, indent=1))
        return Broker(
            "amqtt", HOST, p, users, tls_files.ca if tls_files else None, folder,
            [sys.executable, str(REPO / "host_sim" / "broker.py"), "--config", str(conf)],
            folder / "amqtt.log",
        )

    broker = _start_on_free_port(make, port)
    try:
        yield broker
    finally:
        broker.stop()


# -- MQTT 3.1.1 by hand --------------------------------------------------------------------
def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def connect_packet(
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    keepalive: int = 30,
    clean_session: bool = True,
) -> bytes:
    """An MQTT 3.1.1 CONNECT; `will` = (topic, payload, qos, retain)."""
    flags = 0x02 if clean_session else 0
    payload = _field(client_id.encode())
    if will:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _field(topic.encode()) + _field(message)
    if username is not None:
        flags |= 0x80
        payload += _field(username.encode())
    if password is not None:
        flags |= 0x40
        payload += _field(password.encode())
    variable = _field(b"MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    body = variable + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise BrokerError("connection closed after {} of {} bytes".format(len(data), n))
        data += chunk
    return data


def raw_connect(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float = IO_TIMEOUT,
) -> tuple[socket.socket, int]:
    """Open a connection, send CONNECT, read CONNACK: (socket, 3.1.1 return code).

    The socket stays open (the session lives) until the caller closes it; closing it without a
    DISCONNECT is an abnormal end, so the broker publishes the will.
    """
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    try:
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
        sock.sendall(connect_packet(client_id, username, password, will))
        head = _recv_exact(sock, 4)
        if head[0] != 0x20 or head[1] != 2:
            raise BrokerError("not a CONNACK: {!r}".format(head))
        return sock, head[3]
    except BaseException:
        sock.close()
        raise


# -- paho-mqtt client ----------------------------------------------------------------------
class ConnectRefused(BrokerError):
    """The broker answered CONNECT with a refusal; `.reason` is paho's ReasonCode."""

    def __init__(self, reason):
        super().__init__("connection refused: {} ({})".format(reason, int(reason.value)))
        self.reason = reason


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def topic_matches(filt: str, topic: str) -> bool:
    import paho.mqtt.client as mqtt

    return mqtt.topic_matches_sub(filt, topic)


class MqttClient:
    """A paho-mqtt client on its own network thread; every wait is bounded.

    Received messages are kept in arrival order (`.messages`); `wait_for` blocks on a condition
    until a matching one arrives. Use as a context manager (connects, then disconnects).
    """

    def __init__(
        self,
        broker: Broker,
        username: str | None,
        password: str | None = None,
        *,
        client_id: str | None = None,
        mqtt5: bool = False,
        ca: Path | str | None = None,
        server_hostname: str | None = None,
        will: tuple[str, bytes, int, bool] | None = None,
        keepalive: int = 30,
    ):
        import paho.mqtt.client as mqtt

        self.broker = broker
        self.host = server_hostname or broker.host
        self.messages: list[Message] = []
        self.reason = None  # the CONNACK's ReasonCode
        self._cond = threading.Condition()
        self._connack = threading.Event()
        self._disconnected = threading.Event()
        self._subacks: dict[int, list[int]] = {}
        self._pubacks: dict[int, int] = {}
        protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or "{}-{}".format(username or "anon", id(self)),
            protocol=protocol,
        )
        self.client.connect_timeout = IO_TIMEOUT
        if username is not None:
            if password is None:
                password = broker.users[username]
            self.client.username_pw_set(username, password)
        if broker.tls or ca is not None:
            self.client.tls_set_context(client_context(ca if ca is not None else broker.ca))
        if will:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        self._keepalive = keepalive
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    # paho's thread
    def _on_connect(self, client, userdata, flags, reason, properties):
        self.reason = reason
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        self._disconnected.set()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self._cond:
            self._subacks[mid] = [int(r.value) for r in reasons]
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason, properties):
        with self._cond:
            self._pubacks[mid] = int(reason.value)
            self._cond.notify_all()

    # the test's thread
    def connect(self, timeout: float = IO_TIMEOUT) -> MqttClient:
        """Connect and wait for CONNACK; ConnectRefused if refused (then no reconnects)."""
        self.client.connect(self.host, self.broker.port, keepalive=self._keepalive)
        self.client.loop_start()
        if not self._connack.wait(timeout):
            self.close()
            raise BrokerError("no CONNACK from {} within {} s".format(self.broker.url, timeout))
        if self.reason is not None and self.reason.is_failure:
            self.close()
            raise ConnectRefused(self.reason)
        return self

    def close(self, timeout: float = IO_TIMEOUT) -> None:
        """DISCONNECT (so no will), wait until it is sent, stop the network thread."""
        if self.client.is_connected():
            self.client.disconnect()
            if not self._disconnected.wait(timeout):
                self.client.loop_stop()
                raise BrokerError("DISCONNECT not done within {} s".format(timeout))
        self.client.loop_stop()

    def __enter__(self) -> MqttClient:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    def _wait(self, ready: Callable[[], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = ready()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError("{}: nothing within {} s".format(what, timeout))
                self._cond.wait(left)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = IO_TIMEOUT) -> int:
        """Subscribe and wait for SUBACK: the granted QoS, or 0x80 (refused)."""
        rc, mid = self.client.subscribe(topic, qos)
        if rc != 0:
            raise BrokerError("subscribe {} failed locally: {}".format(topic, rc))
        codes = self._wait(lambda: self._subacks.get(mid), timeout, "SUBACK for " + topic)
        return codes[0]

    def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
        timeout: float = IO_TIMEOUT,
    ) -> int | None:
        """Publish; for QoS 1 wait for PUBACK and return its reason code (MQTT 5: 0x87 = not
        authorized; MQTT 3.1.1 has none, 0), for QoS 0 wait until written, return None."""
        info = self.client.publish(topic, payload, qos, retain)
        if qos == 0:
            info.wait_for_publish(timeout)
            return None
        return self._wait(
            lambda: (self._pubacks[info.mid],) if info.mid in self._pubacks else None,
            timeout, "PUBACK for " + topic,
        )[0]

    def wait_for(self, topic_filter: str, timeout: float = IO_TIMEOUT, start: int = 0) -> Message:
        """The first message (from index `start`) whose topic matches `topic_filter`."""

        def first():
            for m in self.messages[start:]:
                if topic_matches(topic_filter, m.topic):
                    return (m,)
            return None

        return self._wait(first, timeout, "a message on " + topic_filter)[0]

    def received(self, topic_filter: str = "#") -> list[Message]:
        with self._cond:
            return [m for m in self.messages if topic_matches(topic_filter, m.topic)]
