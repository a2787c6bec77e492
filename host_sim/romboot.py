"""The simulator's ROMFS partition: run firmware code from a memory-mapped image, as an ESP32 does.

On the charger the firmware is a ROMFS image in its own flash partition (`mpremote romfs deploy
build/mpy/firmware.romfs`); the port mounts it at /rom, and imports execute the .mpy bytecode in
place, so only the objects the code creates take heap. The unix port has no flash, so the runner
reserves the partition in the firmware process's environment block: the variable MPEVSE_ROM
holds exactly as many placeholder bytes as the image has. That block is fixed memory outside the
GC heap, like mapped flash. This module, run under the MicroPython unix port, copies the image
into that slot, mounts it at /rom and calls `main(args)` of the module named on the command line:

    MPEVSE_ROM=<placeholder> micropython -X heapsize=128k -m romboot IMAGE MODULE [ARGS...]

Only /rom serves the firmware: the original path (the folder holding this launcher) stays behind
it for the launcher's own companions, never for firmware modules.
"""

import gc
import os
import sys

import uctypes
import vfs

SLOT = b"MPEVSE_ROM="


class RomError(Exception):
    """No usable partition slot, or the image does not fit it (the message says which)."""


def _environment_block():
    """(address, length) of this process's environment strings, from /proc/self/stat."""
    with open("/proc/self/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2:].split()  # fields[0] is field 3 of proc(5)
    start = int(fields[47])  # env_start, field 50
    return start, int(fields[48]) - start  # env_end, field 51


def _slot(size):
    """The placeholder bytes of MPEVSE_ROM as a bytearray over that memory (no copy)."""
    start, length = _environment_block()
    env = uctypes.bytearray_at(start, length)
    i = 0
    while i < length:
        if env[i:i + len(SLOT)] == SLOT:
            at = i + len(SLOT)
            if at + size >= length or env[at + size] != 0 or env[at + size - 1] == 0:
                raise RomError("MPEVSE_ROM holds no slot of exactly {} bytes".format(size))
            return uctypes.bytearray_at(start + at, size)
        while i < length and env[i]:
            i += 1
        i += 1
    raise RomError("MPEVSE_ROM is not in the environment: no partition to load the image into")


def mount(image):
    """Copy the ROMFS image file into the slot and mount it at /rom, first on sys.path."""
    size = os.stat(image)[6]
    rom = _slot(size)
    with open(image, "rb") as f:
        if f.readinto(rom) != size:
            raise RomError("short read of " + image)
    vfs.mount(vfs.VfsRom(rom), "/rom")
    sys.path[:] = ["/rom"] + [p for p in sys.path if p not in ("", ".")]
    gc.collect()


def main(argv):
    if len(argv) < 2:
        raise RomError("usage: romboot IMAGE MODULE [ARGS...]")
    mount(argv[0])
    module = __import__(argv[1], None, None, ["main"])
    module.main(argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
