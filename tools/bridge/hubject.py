"""The HTTP client toward Hubject: mutual TLS, deadlines, the per-operation budget, and every
failure turned into an OICP code (the table in tools/bridge/oicp.py).

aiohttp: one ClientSession with a keep-alive connection pool, so an AuthorizeStart after the
first costs one request on an open TLS connection, not a handshake. TLS (fact sheet §10):
our client certificate (the result of Hubject's CSR process), Hubject's root AND intermediate
CA in one trust file, host name checked. Plain http:// only toward a loopback host (tests,
the demo); `check_url` refuses anything else.

Retries: only HTTP 429, which Hubject sends before processing a call over the AUP limit (no
session is opened), and only when the retry can still finish before the deadline. Time-outs,
5xx and connection failures are never retried: an AuthorizeStart that reached Hubject opens a
session and may broadcast to every EMP, so a blind repeat would open a second one (§10).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from firmware import oicp_status as S
from tools.bridge import oicp
from tools.bridge.budget import Budgets

MIN_CALL_S = 0.05  # a call with less time than this left is not started, seconds


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """The base URL (ending in `/api/oicp`, no trailing slash); ValueError for a scheme other
    than https, or http toward a host that is not loopback."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("hubject url {!r}: need https://HOST[:PORT]/api/oicp".format(url))
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("hubject url {!r}: plain http only toward a loopback host; Hubject "
                         "needs https with mutual TLS".format(url))
    return url.rstrip("/")


def client_context(cert: str | None, key: str | None, ca: str | None) -> ssl.SSLContext:
    """TLS toward Hubject: verify its chain against `ca` (root + intermediate), check the host
    name, present our certificate. TLS 1.2 or later."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class Outcome:
    """What one OICP call produced: the answer for the charge point and the log's figures."""

    answer: dict  # the down/authorize body
    http_status: int | None  # None: no HTTP answer (time-out, connection, budget)
    latency_ms: float  # time on the wire: from the first try to the last answer, minus waits
    attempts: int
    process_id: str | None = None  # Hubject's Process-ID header, for support tickets
    wait_ms: float = 0.0  # waited for the budget (AUP rate, a 429's Retry-After)


class HubjectClient:
    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None, budgets: Budgets,
                 timeout_ms: int, connections: int = 64):
        self.base = check_url(base_url)
        self.ssl = ssl_context if self.base.startswith("https:") else None
        self.budgets = budgets
        self.timeout_s = timeout_ms / 1000.0
        self.connections = connections  # the keep-alive pool's size: calls in flight, at most
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else False,
                                         limit=self.connections,
                                         keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: json.dumps(o, separators=(",", ":")),
            headers={"Accept": "application/json"})

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def authorize(self, msg_id: str, operation: str, body: dict,
                        deadline: float) -> Outcome:
        """POST an eRoamingAuthorizeStart/Stop and map the result; never raises for a Hubject
        or network failure. `deadline`: monotonic seconds by which the answer must be known
        (the charge point's ttl_ms minus the way back, capped by --hubject-timeout-ms)."""
        assert self.session is not None, "start() first"
        t0 = time.monotonic()
        deadline = min(deadline, t0 + self.timeout_s)
        url = self.base + oicp.authorize_path(operation, body["OperatorID"])
        bucket = self.budgets[operation]
        attempts = 0
        status: int | None = None
        waited = 0.0

        def done(answer, process_id=None):
            total = time.monotonic() - t0
            return Outcome(answer, status, round((total - waited) * 1000, 1), attempts,
                           process_id, round(waited * 1000, 1))

        while True:
            if deadline - time.monotonic() < MIN_CALL_S:
                return done(oicp.refusal(msg_id, S.SERVICE_NOT_AVAILABLE,
                                         "no time left before the charge point's deadline"))
            t_wait = time.monotonic()
            granted = await bucket.acquire(deadline - MIN_CALL_S)
            waited += time.monotonic() - t_wait
            if not granted:
                return done(oicp.refusal(msg_id, S.SERVICE_NOT_AVAILABLE,
                                         operation + " budget exhausted before the deadline"))
            left = deadline - time.monotonic()
            if left < MIN_CALL_S:
                return done(oicp.refusal(msg_id, S.SERVICE_NOT_AVAILABLE, "no time left"))
            attempts += 1
            try:
                async with self.session.post(
                        url, json=body, timeout=aiohttp.ClientTimeout(total=left)) as resp:
                    status = resp.status
                    process_id = resp.headers.get("Process-ID")
                    raw = await resp.read()
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
            except asyncio.TimeoutError:
                return done(oicp.refusal(msg_id, S.PARTNER_DID_NOT_RESPOND,
                                         "no answer from Hubject within {:.0f} ms".format(
                                             left * 1000)))
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
                return done(oicp.refusal(msg_id, S.UNAUTHORIZED_ACCESS,
                                         "TLS with Hubject failed: " + type(e).__name__))
            except (aiohttp.ClientError, OSError) as e:
                return done(oicp.refusal(msg_id, S.SERVICE_NOT_AVAILABLE,
                                         "HTTP to Hubject failed: " + type(e).__name__))
            if status == 429:
                hold = bucket.too_many(retry_after)
                if time.monotonic() + hold + MIN_CALL_S < deadline:
                    continue  # refused before processing: safe to send again after the hold
                return done(oicp.refusal(msg_id, S.SERVICE_NOT_AVAILABLE,
                                         "HTTP 429 and no time left for a retry"), process_id)
            bucket.ok()
            parsed = _json(raw)
            if status == 200:
                if parsed is _BAD:
                    return done(oicp.refusal(msg_id, S.SYSTEM_ERROR,
                                             "Hubject's answer is not JSON"), process_id)
                return done(oicp.answer_from_response(msg_id, operation, parsed), process_id)
            code, info = oicp.failure_code(status, None if parsed is _BAD else parsed)
            return done(oicp.refusal(msg_id, code, info), process_id)


_BAD = object()


def _json(raw: bytes) -> object:
    """The decoded body or _BAD. Charset trouble is no reason to fail (§10: ISO-8859-1 seen)."""
    try:
        return json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return _BAD


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (only the delta-seconds form; an HTTP date counts as absent)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass
class Reply:
    """One OICP push/CDR/notification call's result, for the durable path (tools/bridge/
    durable.py): the HTTP status (None: no HTTP answer), Hubject's decoded body (None when
    absent or not JSON), `error` (why there is no usable answer: time-out, connection, TLS,
    not JSON), the Process-ID header and the log's figures (as in Outcome)."""

    http_status: int | None
    body: object
    latency_ms: float
    attempts: int
    process_id: str | None = None
    wait_ms: float = 0.0
    error: str | None = None
    timed_out: bool = False


async def post(client: HubjectClient, operation: str, path: str, body: dict,
               deadline: float) -> Reply:
    """POST `body` to `path` (after the base URL) as `operation` (its budget bucket), for
    messages that may wait: the budget token is waited for up to `deadline` (monotonic s), a
    429 is retried after its hold (Hubject refused before processing), every other failure is
    returned, never raised. Each attempt is bounded by --hubject-timeout-ms."""
    assert client.session is not None, "start() first"
    t0 = time.monotonic()
    bucket = client.budgets[operation]
    attempts = 0
    waited = 0.0
    status: int | None = None
    process_id: str | None = None

    def done(parsed=None, error=None, timed_out=False):
        total = time.monotonic() - t0
        return Reply(status, parsed, round((total - waited) * 1000, 1), attempts, process_id,
                     round(waited * 1000, 1), error, timed_out)

    while True:
        t_wait = time.monotonic()
        granted = await bucket.acquire(deadline)
        waited += time.monotonic() - t_wait
        if not granted:
            return done(error=operation + " budget exhausted before the deadline")
        attempts += 1
        try:
            async with client.session.post(
                    client.base + path, json=body,
                    timeout=aiohttp.ClientTimeout(total=client.timeout_s)) as resp:
                status = resp.status
                process_id = resp.headers.get("Process-ID")
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            return done(error="no answer from Hubject within {:.0f} ms".format(
                client.timeout_s * 1000), timed_out=True)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as e:
            return done(error="TLS with Hubject failed: " + type(e).__name__)
        except (aiohttp.ClientError, OSError) as e:
            return done(error="HTTP to Hubject failed: " + type(e).__name__)
        if status == 429:
            hold = bucket.too_many(retry_after)
            if time.monotonic() + hold < deadline:
                continue  # refused before processing: safe to send again after the hold
            return done(error="HTTP 429 and the deadline is near")
        bucket.ok()
        parsed = _json(raw)
        if parsed is _BAD:
            return done(error="Hubject's answer is not JSON")
        return done(parsed)
