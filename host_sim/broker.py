"""The embedded MQTT broker: amqtt (PyPI) in its own process, for `make demo` and for machines
without Mosquitto (the deployment's broker, tools/mosquitto/).

    python -m host_sim.broker --config FILE.json
    python -m host_sim.broker --listen 127.0.0.1:0

`--config` is amqtt's own configuration (listeners, plugins: see tests/brokers.py for the
password-file and ACL set-up the tests use). `--listen` alone runs an anonymous broker on that
loopback address (port 0: a free port). Either way one JSON line `{"event": "ready", "url":
"mqtt://HOST:PORT"}` goes to stdout once the broker accepts connections (checked with an MQTT
CONNECT answered by a CONNACK, not assumed), and SIGTERM or SIGINT shut it down cleanly (amqtt's
own script stops only on a KeyboardInterrupt, which a callback may swallow).

Anonymous access is only offered on a loopback address: the demo's broker is never reachable
from the network.
"""

import argparse
import asyncio
import ipaddress
import json
import logging
import signal
import socket
import sys

READY_TIMEOUT_S = 15.0


def _loopback(host):
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def free_port(host="127.0.0.1"):
    """A TCP port free on `host` now (the usual small race is acceptable on loopback)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def anonymous_config(host, port):
    """amqtt's configuration for an anonymous broker on host:port (loopback only)."""
    if not _loopback(host):
        raise ValueError("an anonymous broker listens on a loopback address only, not " + host)
    return {
        "listeners": {"default": {"type": "tcp", "bind": "{}:{}".format(host, port)}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                    {"allow_anonymous": True}},
    }


def _bind_of(config):
    bind = config["listeners"]["default"]["bind"]
    host, _, port = bind.rpartition(":")
    return host, int(port)


async def _connack(host, port, timeout_s):
    """True once an MQTT 3.1.1 CONNECT on host:port is answered by a CONNACK (plain TCP)."""
    cid = b"ready-probe"
    var = b"\x00\x04MQTT\x04\x02\x00\x05"
    body = var + len(cid).to_bytes(2, "big") + cid
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError):
        return False
    try:
        writer.write(bytes((0x10, len(body))) + body)
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(4), timeout_s)
        writer.write(b"\xe0\x00")  # DISCONNECT
        await writer.drain()
        return head[0] == 0x20
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()


async def serve(config, tls=False):
    """Run amqtt with `config` until SIGTERM/SIGINT; prints the ready line first."""
    from amqtt.broker import Broker

    broker = Broker(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    host, port = _bind_of(config)
    if not tls:
        deadline = loop.time() + READY_TIMEOUT_S
        while not await _connack(host, port, 2.0):
            if loop.time() > deadline:
                raise RuntimeError("amqtt did not answer a CONNECT on {}:{}".format(host, port))
            await asyncio.sleep(0.05)
    print(json.dumps({"event": "ready", "url": "{}://{}:{}".format(
        "mqtts" if tls else "mqtt", host, port)}), flush=True)
    await stop.wait()
    await broker.shutdown()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m host_sim.broker", description=__doc__.split(
        "\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", metavar="FILE", help="amqtt's JSON configuration")
    g.add_argument("--listen", metavar="HOST:PORT",
                   help="an anonymous broker on this loopback address (port 0: a free port)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] %(levelname)s %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
    else:
        host, _, port = args.listen.rpartition(":")
        try:
            config = anonymous_config(host, int(port) or free_port(host))
        except ValueError as e:
            p.error(str(e))
    tls = bool(config["listeners"]["default"].get("ssl"))
    asyncio.run(serve(config, tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
