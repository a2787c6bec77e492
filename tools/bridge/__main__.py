"""`python -m tools.bridge [flags]` (tools/bridge/config.py lists them): run the bridge until
SIGINT/SIGTERM. Exit status 2 for a bad configuration (one `error` line says why).
`python -m tools.bridge status --url URL ...`: the operator's table (tools/bridge/status.py).
`python -m tools.bridge replay FILE [the bridge's flags]`: send a dead-letter file's messages
again (tools/bridge/durable.py `replay`), one result line per dead letter; exit 1 if any was not
accepted, 2 for a bad configuration."""

from __future__ import annotations

import asyncio
import signal
import sys

from tools.bridge import durable, status
from tools.bridge.app import Bridge
from tools.bridge.config import ConfigError, load
from tools.bridge.log import Log


async def _run(bridge: Bridge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.start()
        await stop.wait()
    finally:
        await bridge.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["status"]:
        return status.main(args[1:])
    log = Log()
    if args[:1] == ["replay"]:
        if len(args) < 2:
            log.emit("error", kind="config", message="replay FILE [the bridge's flags]")
            return 2
        try:
            cfg = load(args[2:])
            return asyncio.run(durable.replay(cfg, args[1], sys.stdout))
        except (ConfigError, ValueError, OSError) as e:
            log.emit("error", kind="config", message=str(e))
            return 2
    try:
        cfg = load(argv)
        bridge = Bridge(cfg, log)
    except (ConfigError, ValueError, OSError) as e:
        log.emit("error", kind="config", message=str(e))
        return 2
    asyncio.run(_run(bridge))
    return 0


if __name__ == "__main__":
    sys.exit(main())
