"""Boot entry: configuration, board, then the run-time shell and its control loop.

Boot happens in phases so that boot-only code never shares the heap with the run-time code:
`firmware.config` validates config.json, the board module wires the drivers, both are dropped,
and only then is `firmware.shell` (the core and everything it needs) imported. The
control loop is one plain loop instead of asyncio tasks: asyncio's code and objects cost
kilobytes of heap, and nothing here ever waits. Each pass polls every driver once (non-blocking
by contract), looks at the console without waiting, and sleeps the rest of LOOP_MS, so a pilot
change reaches the contactor within one pass. The uplink (a later issue) must keep to that:
exchange messages with this loop, never block it.

On the unix port and CPython the firmware runs as a process of the host simulator:
    micropython -m firmware.app --board unix --flash DIR --reader-port P --meter-port P
                                --simio-port P
It prints one JSON object per observable event on stdout and takes console commands on stdin
(`clear N`, `status`, `heap`, `quit`). On the ESP32, `main.py` calls `run("esp32", "/data")`.
"""

import gc
import sys

from firmware.store import Store
from firmware.unload import forget
from hal.compat import sleep_ms, ticks_diff, ticks_ms

LOOP_MS = 2  # one control-loop pass, then sleep the rest of this
CONSOLE_LINE_MAX = 128  # bytes; the longest command ("clear 4", "status") is far shorter
CONSOLE_READ_MAX = 256  # bytes read per loop pass at most: a flood cannot stall the loop


class Console:
    """Console lines from stdin without ever blocking and without a buffer that select cannot
    see: one byte at a time from the unbuffered byte stream (CPython: sys.stdin.buffer.raw;
    MicroPython: sys.stdin.buffer, whose read(n) would wait for all n bytes) while poll says
    more is there, so back-to-back commands are all seen at once (a TextIOWrapper's readline
    buffers the lines after the first, and poll then waits for the next input). `line()` ->
    the next complete line (str), None if none yet, "" at EOF. A line over CONSOLE_LINE_MAX
    bytes or not UTF-8 gives ("error", why) instead, once, without its text."""

    def __init__(self, stream):
        import select

        raw = getattr(stream, "buffer", stream)
        self.raw = getattr(raw, "raw", raw)
        self.poller = select.poll()
        self.poller.register(self.raw, select.POLLIN)
        self.buf = bytearray()
        self.dropped = 0  # bytes of the current over-long line thrown away
        self.eof = False

    def line(self):
        if self.eof:
            return ""
        for _ in range(CONSOLE_READ_MAX):
            if not self.poller.poll(0):
                return None
            b = self.raw.read(1)
            if not b:
                self.eof = True
                return ""
            if b == b"\n":
                return self._take()
            if len(self.buf) < CONSOLE_LINE_MAX:
                self.buf.extend(b)
            else:
                self.dropped += 1
        return None

    def _take(self):
        data = bytes(self.buf)
        self.buf = bytearray()
        if self.dropped:
            n = len(data) + self.dropped
            self.dropped = 0
            return ("error", "console line of {} bytes, longer than {}: ignored".format(
                n, CONSOLE_LINE_MAX))
        try:
            return data.decode()
        except UnicodeError:
            return ("error", "console line of {} bytes is not UTF-8 text: ignored".format(
                len(data)))


def build_board(target, flash_dir, ports):
    """config.json, validated (config.ConfigError names the field and the rule), and the
    board built from it. The boot-only modules are dropped before returning, so their code
    leaves the heap once this frame's references to them are gone; the configuration's stays
    until the board is wired, whose errors are config.ConfigErrors too."""
    import os

    from firmware import config

    path = flash_dir + "/config.json"
    config.check_size(os.stat(path)[6])  # before reading: 100 KB would not fit the heap
    with open(path, "rb") as f:  # bytes: config.load says "not UTF-8" itself
        cfg = config.load(f.read())
    del config
    if target == "unix":
        from hal.boards import unix as wiring
    elif target == "host":
        from hal.boards import host as wiring
    elif target == "esp32":
        from hal.boards import esp32 as wiring
    else:
        raise ValueError("unknown board " + target)
    board = wiring.build(cfg, **ports)
    # what the configuration and the builder made lives in other modules. Every target's
    # builder goes, not only this one's: a builder left loaded from an earlier boot in the
    # same process (tests) would hold the ConfigError of a firmware.config dropped here
    forget("firmware.config", "hal.meter_models", "hal.boards.common", "hal.boards.unix",
           "hal.boards.host", "hal.boards.esp32")
    return cfg, board


def uplink_code(cfg, mem_alloc):
    """Import the uplink's modules now if config.json configures an uplink (the shell imports
    them when it builds the uplink), so that the heap base taken next holds all the run-time
    code and the working heap above it counts objects only, not imported code (in the image,
    the code itself stays in ROMFS; what an import takes from the heap is its module, class
    and function objects). -> the heap (B) those imports took, 0 without an uplink."""
    if not (cfg.get("uplink") or {}).get("url"):
        return 0
    gc.collect()
    before = mem_alloc()
    from firmware import contract, mqtt, uplink  # noqa: F401  (kept in sys.modules)

    gc.collect()
    return mem_alloc() - before


GC_THRESHOLD = 12288  # bytes allocated between automatic collections (MicroPython): 4096 made
# the loop gap 25 ms in bench_uplink (mqtts), 12288 keeps it at 13 ms and passes at 124k


def run(target, flash_dir, ports=None, console=None):
    """Boot, then the control loop until `quit`, the console's EOF or an exception; a
    `console` stream (stdin) is read through `Console`, never waiting."""
    start = ticks_ms()
    store = Store(flash_dir)
    cfg, board = build_board(target, flash_dir, ports or {})
    gc.collect()
    from firmware.shell import Shell, mem_alloc

    code = uplink_code(cfg, mem_alloc)
    gc.collect()
    base = mem_alloc()  # all the run-time code is in: above this is the working heap
    shell = Shell(cfg, board, store)
    shell.boot(ticks_ms())
    gc.collect()
    shell.heap_base = base
    if hasattr(gc, "threshold"):  # MicroPython (CPython's gc has no such call)
        # collect after every GC_THRESHOLD bytes allocated, not only when the heap is
        # exhausted: short-lived garbage is freed while it lies at the heap's low end, so
        # the long-lived objects made meanwhile do not end up scattered between it. Without
        # it a 128k heap with TLS failed a 560 B allocation with ~15 KB free (fragmented)
        gc.threshold(GC_THRESHOLD)
    board.emit("ready", boot_ms=ticks_diff(ticks_ms(), start), heap=mem_alloc(), uplink_code=code)
    if console is not None:
        console = Console(console)
    try:
        last = ticks_ms()
        while shell.running:
            now = ticks_ms()
            gap = ticks_diff(now, last)  # the longest is the loop's worst reaction delay
            if gap > shell.gap_max_ms:
                shell.gap_max_ms = gap
            last = now
            shell.poll_once(now)
            line = None if console is None else console.line()
            while line is not None and shell.running:  # every complete line now
                if line == "":  # stdin closed: the simulator is gone, stop cleanly
                    shell.running = False
                elif isinstance(line, tuple):
                    shell.out("error", kind="console", message=line[1])
                else:
                    shell.command(line, ticks_ms())
                line = console.line() if shell.running else None
            spent = ticks_diff(ticks_ms(), now)
            if spent < LOOP_MS:
                sleep_ms(LOOP_MS - spent)
    finally:
        shell.safe_state(ticks_ms())  # whatever ended the loop, no contactor stays closed
        if shell.uplink is not None:
            shell.uplink.t.stop()
    if shell.reset:  # the backend asked for a restart (reset, or a new config.json)
        shell.outbox.flush()  # acks held in RAM go to flash: nothing acknowledged is resent
        if target == "esp32":
            board.reset()  # Esp32Board.reset: machine.reset(), never returns
        from firmware.uplink import RESET_EXIT

        sys.exit(RESET_EXIT)  # the simulator's runner restarts the process


def parse_args(argv):
    """--board B --flash DIR [--reader-port P] [--meter-port P] [--simio-port P]"""
    opts = {"board": "unix", "flash": "flash"}
    ports = {}
    for i in range(0, len(argv), 2):
        key = argv[i]
        if not key.startswith("--") or i + 1 >= len(argv):
            raise ValueError("bad argument: " + key)
        name = key[2:]
        if name.endswith("-port"):
            ports[name[:-5]] = argv[i + 1]
        elif name in opts:
            opts[name] = argv[i + 1]
        else:
            raise ValueError("unknown option: " + key)
    return opts, ports


def main(argv):
    try:
        opts, ports = parse_args(argv)
        run(opts["board"], opts["flash"], ports, console=sys.stdin)
    except (ValueError, OSError) as e:
        # a ConfigError comes from build_board, which keeps firmware.config loaded until the
        # board is built: this import finds that module, so the class is the one raised
        from firmware.config import ConfigError
        from hal.boards.board import json_line as emit  # perhaps no board yet: stdout

        emit("error", kind="config" if isinstance(e, ConfigError) else "startup",
             message=str(e))
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
