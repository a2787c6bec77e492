"""``python -m host_sim.hubject``: run the Hubject simulator (options: see the package doc)."""

import argparse
import asyncio
import ipaddress
import json
import signal
import sys
import urllib.parse

from aiohttp import web

from host_sim import pki
from host_sim.hubject import server


def _hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]") or "127.0.0.1", int(port)


def _loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(scheme, host, port, path=""):
    shown = "[%s]" % host if ":" in host else host
    return "%s://%s:%d%s" % (scheme, shown, port, path)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m host_sim.hubject",
                                description="Hubject (OICP 2.3) simulator, CPO side")
    p.add_argument("--listen", type=_hostport, required=True, help="HOST:PORT for /api/oicp")
    p.add_argument("--cards", help="JSON file {\"cards\": {UID: {...}}}")
    p.add_argument("--tls-cert", help="server certificate chain (PEM)")
    p.add_argument("--tls-key", help="server key (PEM)")
    p.add_argument("--client-ca", help="require client certificates verifying against this")
    p.add_argument("--control", type=_hostport, default=("127.0.0.1", 0),
                   help="HOST:PORT of the control API (loopback; default 127.0.0.1:0)")
    p.add_argument("--cpo-url", help="CPO service URL up to and including /api/oicp")
    p.add_argument("--cpo-cert", help="client certificate toward the CPO (PEM chain)")
    p.add_argument("--cpo-key", help="its key")
    p.add_argument("--cpo-ca", help="CA file the CPO's server certificate verifies against")
    p.add_argument("--cpo-timeout", type=float, default=60.0,
                   help="seconds Hubject waits for the CPO (default 60, fact sheet §4)")
    p.add_argument("--log", help="file for one JSON line per call (default stdout)")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.client_ca and not args.tls_cert:
        p.error("--client-ca needs --tls-cert/--tls-key (mutual TLS)")
    if not args.tls_cert and not _loopback(args.listen[0]):
        p.error("plain HTTP only on a loopback address; give --tls-cert/--tls-key")
    if not _loopback(args.control[0]):
        p.error("--control must be a loopback address")
    if bool(args.cpo_cert) != bool(args.cpo_key):
        p.error("--cpo-cert and --cpo-key go together")
    if args.cpo_url:
        url = urllib.parse.urlsplit(args.cpo_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            p.error("--cpo-url must be an http(s) URL")
        if url.scheme == "http" and not _loopback(url.hostname):
            p.error("plain http:// toward the CPO only on a loopback address")
    if not 0 < args.cpo_timeout <= 60:
        p.error("--cpo-timeout must be in (0, 60] seconds (fact sheet §4)")
    return args


def _load_cards(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("cards"), dict):
        raise ValueError("%s: expected {\"cards\": {...}}" % path)
    return data["cards"]


async def serve(args, out=sys.stdout):
    """Start both servers, print the ready line, run until SIGINT/SIGTERM."""
    log = open(args.log, "a", encoding="utf-8") if args.log else out
    cpo = {"url": args.cpo_url, "cert": args.cpo_cert, "key": args.cpo_key, "ca": args.cpo_ca}
    hub = server.Hubject(cards=_load_cards(args.cards) if args.cards else None, log=log,
                         cpo=cpo if args.cpo_url else None, cpo_timeout=args.cpo_timeout)
    ctx = None
    if args.tls_cert:
        ctx = pki.server_context(args.tls_cert, args.tls_key, args.client_ca)
    runners = []
    try:
        urls = []
        for app, (host, port), ssl_ctx in ((hub.oicp_app(), args.listen, ctx),
                                           (hub.control_app(), args.control, None)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx)
            await site.start()
            real_port = runner.addresses[0][1]
            urls.append((host, real_port))
        ready = {"event": "ready",
                 "listen": _url("https" if ctx else "http", *urls[0], server.BASE),
                 "control": _url("http", *urls[1])}
        out.write(json.dumps(ready) + "\n")
        out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await hub.close()
        for runner in reversed(runners):
            await runner.cleanup()
        if log is not out:
            log.close()
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
