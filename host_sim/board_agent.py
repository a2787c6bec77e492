"""The virtual board's interpreter: runs under the MicroPython unix port for host_sim/board.py.

host_sim/board.py owns the REPL protocol on the pseudo-terminal; this script only executes
what it is handed, in one persistent `__main__` namespace per boot, the way a board's raw REPL
does. It is started with the board's flash folder as its working directory and mounts that
folder at `/`, so `/data/config.json` or `open("main.py")` reach the flash, never the host.

Requests on stdin, one at a time:
    X <n>\\n <n bytes of source>    execute as a module body (raw REPL)
    S <n>\\n <n bytes of source>    execute as one friendly-REPL line (expressions echo repr)
Each answer on stdout is exactly what a board's raw REPL sends after "OK": the program's
output, \\x04, the traceback if it raised (else nothing), \\x04. Output is written as it is
produced (the unix port's stdout is unbuffered), so a slow program streams.

A board's `machine.reset()` / `machine.soft_reset()` end this process with exit status 40 /
41 after flushing (board.py restarts it, as the chip reboots); any other SystemExit is a soft
reset (41), as in a board's raw REPL. What a stock ESP32 lacks is left out on purpose; what the
board must report differently from the unix port comes from the environment:
    MPEVSE_BOARD_VERSION    "1.24.0": sys.implementation.version and os.uname().release
    MPEVSE_BOARD_FLASH      bytes of the flash partition os.statvfs("/") reports (littlefs,
                            4096-byte blocks; the used blocks are counted from the files)
    MPEVSE_BOARD_ROM        a file holding the ROMFS partition (absent: no partition, as the
                            stock ESP32 builds); vfs.rom_ioctl serves it, a valid image is
                            mounted at /rom at boot
"""

import io
import os
import sys

import vfs

RESET_HARD = 40
RESET_SOFT = 41
BLOCK = 4096  # ESP32 flash erase block and littlefs block (hardware.md 6.5)
ROMFS_HEADER = b"\xd2\xcd\x31"

_os = os
_sys = sys
_vfs = vfs
FLASH = os.getcwd()
AGENT_FRAME = b"board_agent.py"


def _env_int(name, default):
    v = os.getenv(name)
    return int(v) if v else default


class _Machine:
    """What of `machine` the REPL tools use: resets end this process (board.py reboots it)."""

    def reset(self):
        raise SystemExit(RESET_HARD)

    def soft_reset(self):
        raise SystemExit(RESET_SOFT)

    def unique_id(self):
        return b"\x24\x0a\xc4\x00\x00\x01"

    def freq(self):
        return 240000000


class _Os:
    """The real os, but statvfs reports the emulated flash and uname the emulated release."""

    def __init__(self, size, release):
        self._size = size
        self._release = release

    def __getattr__(self, name):
        return getattr(_os, name)

    def _used_blocks(self, path):
        n = 1  # the directory itself
        for entry in _os.ilistdir(path):
            name, kind = entry[0], entry[1]
            full = (path.rstrip("/") + "/" + name) if path != "/" else "/" + name
            if kind == 0x4000:
                n += self._used_blocks(full)
            else:
                size = _os.stat(full)[6]
                n += max(1, (size + BLOCK - 1) // BLOCK)
        return n

    def statvfs(self, path):
        if not self._size:
            return _os.statvfs(path)
        blocks = self._size // BLOCK
        free = max(0, blocks - 2 - self._used_blocks("/"))  # 2: the littlefs superblock pair
        return (BLOCK, BLOCK, blocks, free, free, 0, 0, 0, 0, 255)

    def ilistdir(self, path="."):
        """(name, type, inode, size) as littlefs gives them (VfsPosix leaves the size out)."""
        base = path.rstrip("/") + "/" if path not in ("", ".") else ""
        for e in _os.ilistdir(path):
            size = 0 if e[1] == 0x4000 else _os.stat(base + e[0])[6]
            yield (e[0], e[1], 0, size)

    def rename(self, old, new):
        """The unix port's VfsPosix, mounted with a root folder, fails rename() of absolute
        paths (ENOENT) while relative ones work: hand it paths relative to /."""
        return _os.rename(self._rel(old), self._rel(new))

    def _rel(self, p):
        if not p.startswith("/"):
            p = _os.getcwd().rstrip("/") + "/" + p
        return p.lstrip("/") or "."

    def uname(self):
        from collections import namedtuple

        u = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
        return u("esp32", "esp32", self._release, "v{} on 2025-01-01".format(self._release),
                 "Generic ESP32 module with ESP32")


class _Impl:
    def __init__(self, version):
        self.name = "micropython"
        self.version = version
        self._mpy = _sys.implementation._mpy & 0xFF | (10 << 10)  # arch xtensawin (hw.md 8.2)
        self._machine = "Generic ESP32 module with ESP32"
        self._build = "ESP32_GENERIC"


class _Sys:
    """The real sys, but `implementation` says the emulated release."""

    def __init__(self, version):
        self.implementation = _Impl(version)

    def __getattr__(self, name):
        return getattr(_sys, name)


class _Rom:
    """vfs with rom_ioctl over a partition file, as a ROMFS-enabled ESP32 build has it."""

    def __init__(self, path):
        self._file = open(path, "r+b")  # opened before / becomes the flash, kept open
        self._part = bytearray(self._file.read())

    def __getattr__(self, name):
        return getattr(_vfs, name)

    def mounted_image(self):
        """Mount a valid image at /rom, as the port does at boot; -> True if mounted."""
        if self._part[:3] != ROMFS_HEADER:
            return False
        try:
            _vfs.mount(_vfs.VfsRom(memoryview(self._part)), "/rom")
        except OSError:
            return False
        return True

    def rom_ioctl(self, op, *args):
        if op == 1:  # number of partitions
            return 1
        if args and args[0] != 0:
            return -19  # ENODEV: only partition 0
        if op == 2:  # the partition's memory
            return memoryview(self._part)
        if op == 3:  # prepare (erase): (id, length) or (id, offset, length)
            offset, length = (0, args[1]) if len(args) == 2 else (args[1], args[2])
            for i in range(offset, min(len(self._part), offset + length)):
                self._part[i] = 0xFF
            return 4  # the smallest write
        if op == 4:  # write (id, offset, data)
            offset, data = args[1], args[2]
            self._part[offset:offset + len(data)] = data
            return 0
        if op == 5:  # done: the partition is on "flash" now
            self._file.seek(0)
            self._file.write(self._part)
            self._file.flush()
            return 0
        if op == 6:  # erase block size
            return BLOCK
        return -22  # EINVAL


def boot():
    """Mount the flash at /, install the board's module stand-ins, -> the globals of __main__."""
    rom = os.getenv("MPEVSE_BOARD_ROM")
    rom = _Rom(rom) if rom else None  # its host file is out of reach once / is the flash
    try:
        _vfs.umount("/")
    except OSError:
        pass  # nothing mounted at / on this build: mounting below is all there is to do
    _vfs.mount(_vfs.VfsPosix(FLASH), "/")
    _os.chdir("/")
    release = os.getenv("MPEVSE_BOARD_VERSION")
    version = tuple(int(p) for p in release.split(".")) if release else None
    sys.modules["machine"] = _Machine()
    sys.modules["os"] = _Os(_env_int("MPEVSE_BOARD_FLASH", 0), release)
    if version:
        sys.modules["sys"] = _Sys(version)
    if rom:
        sys.modules["vfs"] = rom
        rom.mounted_image()
    sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"] if rom else ["", ".frozen", "/lib"]
    return {"__name__": "__main__"}


def serve(g):
    out = sys.stdout.buffer
    inp = sys.stdin.buffer
    while True:
        try:
            head = inp.readline()
        except KeyboardInterrupt:
            continue  # a Ctrl-C between programs: nothing runs, nothing to say
        if not head:
            return 0
        kind, n = head.split()
        n = int(n)
        src = b""
        while len(src) < n:
            more = inp.read(n - len(src))
            if not more:
                return 0
            src += more
        err = io.StringIO()
        try:
            exec(compile(src.decode(), "<stdin>", "single" if kind == b"S" else "exec"), g)
        except SystemExit as e:
            code = e.args[0] if e.args else 0
            return code if code in (RESET_HARD, RESET_SOFT) else RESET_SOFT
        except BaseException as e:  # noqa: BLE001 -- the board reports everything, as a REPL does
            sys.print_exception(e, err)
        out.write(b"\x04")
        # the traceback as a board shows it: without this script's own frame
        out.write(b"".join(line + b"\n" for line in err.getvalue().encode().split(b"\n")[:-1]
                           if AGENT_FRAME not in line))
        out.write(b"\x04")


if __name__ == "__main__":
    sys.exit(serve(boot()))
