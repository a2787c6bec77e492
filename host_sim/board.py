"""A virtual MicroPython board on a pseudo-terminal: what `mpremote` and `tools.deploy` talk to.

    python -m host_sim board --flash DIR [--version 1.24.0] [--flash-size BYTES]
                             [--romfs-size BYTES] [--heap 2m]

prints one JSON line `{"port": "/dev/pts/N"}` once the board is ready and serves until killed
(SIGTERM/SIGINT). The other side of the pty speaks MicroPython's REPL protocol as a board's USB
serial does, byte for byte:

- friendly REPL: echo, a line executes on Enter (expressions print their repr), `>>> `;
  Ctrl-A enters the raw REPL, Ctrl-B prints the banner, Ctrl-C abandons the line (or interrupts
  a running program), Ctrl-D on an empty line soft-resets ("MPY: soft reboot").
- raw REPL: "raw REPL; CTRL-B to exit\\r\\n>"; source up to Ctrl-D, answered "OK", then the
  program's output, \\x04, its traceback, \\x04, ">"; Ctrl-D on an empty buffer soft-resets;
  Ctrl-B goes back to the friendly REPL; Ctrl-C clears the buffer.
- raw-paste mode: "\\x05A\\x01" is answered "R\\x01" and the window (WINDOW bytes, uint16 LE),
  one \\x01 per window consumed, \\x04 acknowledges the end (no "OK"); `--no-raw-paste` answers
  "R\\x00" instead, the clean refusal a board without it gives.

The programs run in a MicroPython unix-port process (host_sim/board_agent.py) whose working
directory is the flash folder, mounted at `/` in it, so the board's paths are the flash's. The
unix port exits on Ctrl-D, so this shim owns the protocol and restarts the interpreter on a soft
reset, on `machine.reset()` (a hard reset: ROM boot lines, then the friendly banner, as a chip
that rebooted) and on `machine.soft_reset()`; globals live until the next reset, as on a board.
A hard reset does not run the flash's boot.py/main.py: the deployed main.py is the ESP32 entry
and needs machine.UART, PWM and ADC, which the unix port does not have (the simulator runs the
deployed tree with its virtual devices instead, see tests/test_deploy.py).

What makes it a board rather than the unix port (host_sim/board_agent.py): `--version` is the
MicroPython release it reports (sys.implementation.version, os.uname(); the .mpy format is the
unix port's, which is what the deploy compiles for), `--flash-size` the littlefs partition
os.statvfs("/") reports (default 2 MiB: the `vfs` partition of MicroPython's ESP32 4 MiB table),
`--romfs-size` a ROMFS partition served through vfs.rom_ioctl and kept in the file `DIR.rom`
next to the flash folder (default none, as the stock ESP32 downloads), mounted at /rom at each
boot when it holds a valid image.
"""

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import tty

from host_sim.runner import micropython_exe

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "board_agent.py")
DEFAULT_VERSION = "1.24.1"
DEFAULT_FLASH = 0x200000  # bytes: the ESP32 4 MiB table's vfs partition (0x200000-0x400000)
DEFAULT_HEAP = "2m"  # the agent's heap: mpremote's helpers and a ROMFS partition copy fit
WINDOW = 512  # raw-paste flow-control window, bytes
RESET_HARD, RESET_SOFT = 40, 41  # the agent's exit status for machine.reset() / soft_reset()
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
ROM_BOOT = (b"ets Jul 29 2019 12:21:46\r\n\r\nrst:0xc (SW_CPU_RESET),boot:0x13 "
            b"(SPI_FAST_FLASH_BOOT)\r\nconfigsip: 0, SPIWP:0xee\r\nmode:DIO, clock div:2\r\n"
            b"entry 0x400805e4\r\n")
FRIENDLY, RAW, PASTE, BUSY = "friendly", "raw", "paste", "busy"


class BoardError(Exception):
    """The board could not start (the message says why)."""


class VirtualBoard:
    """One board: a pty pair and the interpreter behind it. `start()`, then `serve()` (or
    `serve_forever()` in a thread of a test), `close()`."""

    def __init__(self, flash, version=DEFAULT_VERSION, flash_size=DEFAULT_FLASH,
                 romfs_size=0, heap=DEFAULT_HEAP, raw_paste=True):
        self.flash = os.path.abspath(flash)
        self.version = version
        self.flash_size = flash_size
        self.romfs_size = romfs_size
        self.heap = heap
        self.raw_paste = raw_paste
        self.rom_file = self.flash.rstrip("/") + ".rom" if romfs_size else None
        self.port = None
        self.master = self.slave = None
        self.agent = None
        self.mode = FRIENDLY
        self.line = bytearray()
        self.pending = bytearray()  # host bytes that arrived while a program ran
        self.paste_seen = 0  # bytes received in the current raw-paste window
        self.busy_from = RAW  # the mode a running program returns to
        self.eots = 0  # \x04 seen in the running program's answer
        self.boots = 0
        self.stopped = False

    # -- life cycle ------------------------------------------------------------------------
    def start(self):
        os.makedirs(self.flash, exist_ok=True)
        if self.rom_file:
            self._prepare_rom()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF translation: bytes as a USB CDC passes them
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.port = os.ttyname(self.slave)
        self._start_agent()
        self._send(self._banner() + b">>> ")
        return self

    def _prepare_rom(self):
        size = os.path.getsize(self.rom_file) if os.path.exists(self.rom_file) else -1
        if size != self.romfs_size:  # a new or resized partition is erased flash
            with open(self.rom_file, "wb") as f:
                f.write(b"\xff" * self.romfs_size)

    def _start_agent(self):
        env = dict(os.environ)
        env["MPEVSE_BOARD_VERSION"] = self.version
        env["MPEVSE_BOARD_FLASH"] = str(self.flash_size)
        env.pop("MPEVSE_BOARD_ROM", None)
        if self.rom_file:
            env["MPEVSE_BOARD_ROM"] = self.rom_file
        env.pop("MICROPYPATH", None)
        try:
            self.agent = subprocess.Popen(
                [micropython_exe(), "-X", "heapsize=" + self.heap, AGENT], cwd=self.flash,
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        except OSError as e:
            raise BoardError("cannot start the MicroPython unix port: {}".format(e)) from None
        self.boots += 1
        self.ran = False  # nothing executed yet by this interpreter

    def _stop_agent(self):
        if self.agent is None:
            return
        agent, self.agent = self.agent, None
        if agent.poll() is None:
            agent.kill()
        agent.wait(5)
        agent.stdin.close()
        agent.stdout.close()

    def close(self):
        self.stopped = True
        self._stop_agent()
        for fd in (self.master, self.slave):
            if fd is not None:
                os.close(fd)
        self.master = self.slave = None

    # -- I/O -------------------------------------------------------------------------------
    def _send(self, data):
        """To the host, as a USB CDC does: what no host reads is dropped, never blocks."""
        view = memoryview(bytes(data))
        while view:
            try:
                n = os.write(self.master, view)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EIO):
                    return
                raise
            view = view[n:]

    def _banner(self):
        return ("MicroPython v{} on 2025-01-01; Generic ESP32 module with ESP32\r\n"
                "Type \"help()\" for more information.\r\n").format(self.version).encode()

    def serve_forever(self):
        while not self.stopped:
            self.serve_once(0.1)

    def serve_once(self, timeout_s):
        """One select over the host side and the interpreter's output (at most timeout_s)."""
        fds = [self.master] + ([self.agent.stdout] if self.agent else [])
        try:
            ready, _, _ = select.select(fds, [], [], timeout_s)
        except (OSError, ValueError):
            if self.stopped:
                return
            raise
        if self.agent is not None and self.agent.stdout in ready:
            out = self.agent.stdout.read(65536)
            if out:
                self._from_agent(out)
            else:
                self._agent_ended()
        if self.master in ready:
            try:
                data = os.read(self.master, 4096)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EIO):
                    return
                raise
            for b in data:
                self._from_host(b)

    # -- the protocol ----------------------------------------------------------------------
    def _from_host(self, b):
        if self.mode == BUSY:
            if b == 3:  # Ctrl-C: KeyboardInterrupt in the running program
                self.agent.send_signal(signal.SIGINT)
            else:  # the REPL reads it once the program ends (a program's own stdin reads
                self.pending.append(b)  # are not emulated)
            return
        if self.mode == PASTE:
            self._paste_byte(b)
        elif self.mode == RAW:
            self._raw_byte(b)
        else:
            self._friendly_byte(b)

    def _raw_byte(self, b):
        if b == 1:  # Ctrl-A: raw-paste request if the buffer is "\x05A", else a fresh prompt
            if bytes(self.line) == b"\x05A":
                self.line.clear()
                if not self.raw_paste:
                    self._send(b"R\x00")
                    return
                self._send(b"R\x01" + WINDOW.to_bytes(2, "little"))
                self.mode, self.paste_seen = PASTE, 0
                return
            self.line.clear()
            self._send(RAW_PROMPT)
        elif b == 2:  # Ctrl-B: friendly REPL
            self.line.clear()
            self.mode = FRIENDLY
            self._send(b"\r\n" + self._banner() + b">>> ")
        elif b == 3:  # Ctrl-C
            self.line.clear()
        elif b == 4:  # Ctrl-D: execute, or soft reset on an empty buffer
            self._send(b"OK")
            if not self.line:
                self._send(b"\r\n")
                self._soft_reset(RAW)
                return
            src, self.line = bytes(self.line), bytearray()
            self._execute(b"X", src, RAW)
        else:
            self.line.append(b)

    def _paste_byte(self, b):
        if b == 4:  # end of the program: acknowledge, then run it
            self._send(b"\x04")
            src, self.line = bytes(self.line), bytearray()
            self._execute(b"X", src, RAW)
            return
        self.line.append(b)
        self.paste_seen += 1
        if self.paste_seen == WINDOW:  # consumed one window: the host may send another
            self.paste_seen = 0
            self._send(b"\x01")

    def _friendly_byte(self, b):
        if b == 1:
            self.line.clear()
            self.mode = RAW
            self._send(b"\r\n" + RAW_PROMPT)
        elif b == 2:
            self.line.clear()
            self._send(b"\r\n" + self._banner() + b">>> ")
        elif b == 3:
            self.line.clear()
            self._send(b"\r\n>>> ")
        elif b == 4:
            if not self.line:
                self._send(b"\r\n")
                self._soft_reset(FRIENDLY)
        elif b in (8, 127):
            if self.line:
                self.line.pop()
                self._send(b"\x08 \x08")
        elif b == 13:
            self._send(b"\r\n")
            if self.line.strip():
                src, self.line = bytes(self.line), bytearray()
                self._execute(b"S", src, FRIENDLY)
            else:
                self.line.clear()
                self._send(b">>> ")
        elif b >= 32 or b == 9:
            self.line.append(b)
            self._send(bytes([b]))

    def _execute(self, kind, src, back_to):
        self.ran = True
        self.mode, self.busy_from, self.eots = BUSY, back_to, 0
        try:
            self.agent.stdin.write(kind + b" " + str(len(src)).encode() + b"\n" + src)
        except (BrokenPipeError, AttributeError):
            self._agent_ended()

    def _from_agent(self, out):
        if self.mode != BUSY:  # output after a program ended: nothing should run
            return
        if self.busy_from == RAW:
            self._send(out)
        else:  # the friendly REPL shows output and traceback with CR LF, without the EOTs
            self._send(out.replace(b"\x04", b"").replace(b"\n", b"\r\n"))
        self.eots += out.count(b"\x04")
        if self.eots >= 2:
            self.mode = self.busy_from
            self._send(b">" if self.mode == RAW else b">>> ")
            queued, self.pending = bytes(self.pending), bytearray()
            for i, b in enumerate(queued):
                self._from_host(b)
                if self.mode == BUSY:  # it started another program: the rest waits again
                    self.pending[:0] = queued[i + 1:]
                    break

    def _agent_ended(self):
        """The interpreter exited: machine.reset() (40), soft_reset()/SystemExit (41), or a
        crash, which a board answers by rebooting too."""
        status = self.agent.wait(5) if self.agent else None
        was = self.busy_from if self.mode == BUSY else self.mode
        if status == RESET_SOFT:
            self._soft_reset(RAW if was in (RAW, PASTE) else FRIENDLY, say=True)
            return
        if status != RESET_HARD:
            print("board: the interpreter ended with status {}".format(status), file=sys.stderr)
            if not self.ran:  # it died while booting: rebooting would only loop
                print("board: it died while booting: stopped", file=sys.stderr)
                self.stopped = True
                return
        self.pending.clear()
        self._stop_agent()
        self._send(ROM_BOOT)
        self._start_agent()
        self.line.clear()
        self.mode = FRIENDLY
        self._send(self._banner() + b">>> ")

    def _soft_reset(self, mode, say=True):
        self.pending.clear()  # a reboot loses what was waiting in the USB buffer
        self._stop_agent()
        if say:
            self._send(b"MPY: soft reboot\r\n")
        self._start_agent()
        self.line.clear()
        self.mode = mode
        self._send(RAW_PROMPT if mode == RAW else self._banner() + b">>> ")


@contextlib.contextmanager
def running(flash, *options, timeout_s=15.0):
    """A board as its own process (`python -m host_sim board --flash FLASH OPTIONS...`), for
    tests and tools: yields (port, process); killed on exit (its interpreter sees EOF and
    ends). Killing the process is a board unplugged: the link is cut, the flash stays."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-m", "host_sim", "board", "--flash", str(flash)]
                            + [str(o) for o in options], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            raise BoardError("the board did not start within {} s: {}".format(
                timeout_s, proc.stderr.read()[-2000:]))
        yield json.loads(line)["port"], proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def size_arg(text):
    """'2097152', '0x200000', '256k' or '2m' -> bytes."""
    t = text.strip().lower()
    scale = {"k": 1024, "m": 1024 * 1024}.get(t[-1:], 1)
    if scale != 1:
        t = t[:-1]
    return int(t, 0) * scale


def main(args):
    """`python -m host_sim board` (args from host_sim.__main__)."""
    board = VirtualBoard(args.flash, version=args.version, flash_size=size_arg(args.flash_size),
                         romfs_size=size_arg(args.romfs_size), heap=args.heap,
                         raw_paste=not args.no_raw_paste)
    try:
        board.start()
    except BoardError as e:
        print("host_sim board: {}".format(e), file=sys.stderr)
        return 2

    def stop(_signo, _frame):
        board.stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"port": board.port}), flush=True)
    try:
        board.serve_forever()
    finally:
        board.close()
    return 0


def add_parser(sub):
    """The `board` subcommand of host_sim.__main__."""
    b = sub.add_parser("board", help="a virtual MicroPython board on a pty (raw REPL, mpremote)")
    b.add_argument("--flash", required=True, metavar="DIR", help="the board's flash folder")
    b.add_argument("--version", default=DEFAULT_VERSION,
                   help="the MicroPython release it reports (default %(default)s)")
    b.add_argument("--flash-size", default=str(DEFAULT_FLASH), metavar="BYTES",
                   help="the littlefs partition os.statvfs reports (default 2 MiB)")
    b.add_argument("--romfs-size", default="0", metavar="BYTES",
                   help="a ROMFS partition of this size (default 0: none, as stock ESP32)")
    b.add_argument("--heap", default=DEFAULT_HEAP, help="the interpreter's heap")
    b.add_argument("--no-raw-paste", action="store_true",
                   help="refuse raw-paste mode (R\\x00), as boards before v1.14 do")
    b.set_defaults(func=main)
    return b
