"""The virtual board (host_sim/board.py) against unmodified mpremote, as a board's USB serial.

mpremote runs as its own command line (`python -m mpremote`), exactly as a user types it; the
board is its own process (`python -m host_sim board`). Also the bare protocol: the friendly
REPL, raw-paste refusal, soft reset by Ctrl-D, and `mip install` of this repository's
package.json from a local path with umqtt.simple resolved from a local micropython-lib-style
index (so no network: the same files mpremote would fetch from micropython.org/pi/v2).
"""

import hashlib
import json
import os
import select
import subprocess
import sys
import time

import pytest

from host_sim.board import running
from tools import build

ROOT = build.ROOT


def mpremote(port, *args, timeout=60):
    done = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return done


def ok(port, *args):
    done = mpremote(port, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def board(tmp_path):
    with running(tmp_path / "flash") as (port, proc):
        yield port, tmp_path / "flash"


def test_exec_cp_ls_sha256sum_and_errors(board, tmp_path):
    port, flash = board
    out = ok(port, "exec", "import sys, os; print(sys.implementation.version[:2], "
                           "os.statvfs('/')[0], os.uname().machine)")
    assert out.strip() == "(1, 24) 4096 Generic ESP32 module with ESP32"
    src = tmp_path / "x.bin"
    src.write_bytes(bytes(range(256)) * 40)
    out = ok(port, "fs", "mkdir", ":data", "+", "fs", "cp", str(src), ":data/x.bin", "+",
             "fs", "ls", ":data", "+", "fs", "sha256sum", ":data/x.bin")
    assert "10240 x.bin" in out
    assert hashlib.sha256(src.read_bytes()).hexdigest() in out
    assert (flash / "data" / "x.bin").read_bytes() == src.read_bytes()  # / is the flash
    done = mpremote(port, "exec", "1/0")
    assert done.returncode != 0 and "ZeroDivisionError" in done.stdout + done.stderr
    assert "board_agent" not in done.stdout + done.stderr  # a board's traceback, no shim frame


def test_globals_live_until_a_reset_and_reset_reboots(board):
    port, _ = board
    out = ok(port, "exec", "x = 41", "+", "exec", "print(x + 1)")  # one session: no reset
    assert out.strip() == "42"
    ok(port, "reset")  # machine.reset() after 100 ms: the interpreter restarts
    time.sleep(0.5)  # (a Ctrl-C before then would interrupt the sleep, as on a board)
    done = mpremote(port, "resume", "exec", "print(x)")
    assert "NameError" in done.stdout + done.stderr
    ok(port, "exec", "y = 1", "+", "soft-reset", "+", "exec", "print('y' in globals())")


def _pty(port):
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    import tty

    tty.setraw(fd)
    return fd


def _read_until(fd, token, timeout=10.0):
    buf = b""
    end = time.monotonic() + timeout
    while token not in buf and time.monotonic() < end:
        if select.select([fd], [], [], 0.1)[0]:
            buf += os.read(fd, 4096)
    assert token in buf, buf
    return buf


def test_friendly_repl_raw_repl_and_soft_reset_by_bytes(board):
    port, _ = board
    fd = _pty(port)
    try:
        os.write(fd, b"\x03\r")
        _read_until(fd, b">>> ")
        os.write(fd, b"6*7\r")
        assert b"42\r\n>>> " in _read_until(fd, b"42\r\n>>> ")
        os.write(fd, b"\x01")
        _read_until(fd, b"raw REPL; CTRL-B to exit\r\n>")
        os.write(fd, b"print('hi')\x04")
        assert _read_until(fd, b"\x04\x04>").endswith(b"OKhi\n\x04\x04>")
        os.write(fd, b"\x05A\x01")
        head = _read_until(fd, b"R\x01")
        assert head.startswith(b"R\x01")
        os.write(fd, b"print(2)\x04")  # 8 bytes, far below the window
        assert _read_until(fd, b"\x04\x04>").endswith(b"\x042\n\x04\x04>")
        os.write(fd, b"\x04")  # Ctrl-D, empty buffer: soft reset, back in the raw REPL
        _read_until(fd, b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>")
        os.write(fd, b"\x02")
        _read_until(fd, b">>> ")
    finally:
        os.close(fd)


def test_raw_paste_refused_cleanly_and_mpremote_falls_back(tmp_path):
    with running(tmp_path / "flash", "--no-raw-paste") as (port, _):
        fd = _pty(port)
        try:
            os.write(fd, b"\r\x03\r\x01")
            _read_until(fd, b"raw REPL; CTRL-B to exit\r\n>")
            os.write(fd, b"\x05A\x01")
            assert _read_until(fd, b"R\x00").endswith(b"R\x00")
        finally:
            os.close(fd)
        big = "x = " + repr("y" * 3000) + "\nprint(len(x))"
        assert ok(port, "exec", big).strip() == "3000"


def _local_index(folder):
    """A micropython-lib-style index holding umqtt.simple (the pinned sdist's module, compiled
    for the board): package/6/umqtt.simple/latest.json + file/<hh>/<hash>."""
    from tools import deps

    mpy = folder / "simple.mpy"
    build.compile_file("umqtt/simple.py", deps.ensure(), str(mpy))
    data = mpy.read_bytes()
    h = hashlib.sha256(data).hexdigest()[:8]
    (folder / "file" / h[:2]).mkdir(parents=True)
    (folder / "file" / h[:2] / h).write_bytes(data)
    pkg = folder / "package" / "6" / "umqtt.simple"
    pkg.mkdir(parents=True)
    (pkg / "latest.json").write_text(json.dumps(
        {"hashes": [["umqtt/simple.mpy", h]], "version": "1.3.4"}))
    return str(folder)


def test_mip_install_from_a_local_path(board, tmp_path):
    port, flash = board
    index = _local_index(tmp_path / "index")
    out = ok(port, "mip", "install", "--index", index, os.path.join(ROOT, "package.json"))
    pkg = json.load(open(os.path.join(ROOT, "package.json")))
    for dst, _src in pkg["urls"]:
        assert (flash / "lib" / dst).read_bytes() == open(os.path.join(ROOT, dst), "rb").read()
    assert (flash / "lib" / "umqtt" / "simple.mpy").exists(), out
    # what was installed imports on the board (sources compiled there, umqtt as .mpy)
    out = ok(port, "exec", "import firmware.config, umqtt.simple; "
                           "print(firmware.config.__file__, umqtt.simple.__file__)")
    assert out.split() == ["/lib/firmware/config.py", "/lib/umqtt/simple.mpy"]


def test_package_json_lists_every_module_the_esp32_runs():
    """package.json cannot go stale: every firmware/ and hal/ module but the host/unix-only
    boards, umqtt.simple as the dependency, the project's version."""
    import tomllib

    pkg = json.load(open(os.path.join(ROOT, "package.json")))
    listed = {dst for dst, _ in pkg["urls"]}
    assert all(dst == src for dst, src in pkg["urls"])
    host_only = {"hal/boards/host.py", "hal/boards/unix.py", "hal/boards/unix_uart.py",
                 "hal/boards/simio.py"}
    want = set()
    for top in build.PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            want.update(os.path.relpath(os.path.join(folder, n), ROOT) for n in files
                        if n.endswith(".py"))
    assert listed == want - host_only
    assert pkg["deps"] == [["umqtt.simple", "latest"]]
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert pkg["version"] == tomllib.load(f)["project"]["version"]


def test_romfs_query_and_deploy_with_mpremote(tmp_path):
    image = os.path.join(ROOT, "build", "mpy", build.IMAGE)
    build.build()
    with running(tmp_path / "flash", "--romfs-size", "256k") as (port, _):
        out = ok(port, "romfs", "query")
        assert "ROMFS0 partition has size 262144 bytes" in out and "Not a valid ROMFS" in out
        ok(port, "romfs", "deploy", image)
        out = ok(port, "romfs", "query", "+", "soft-reset", "+", "exec",
                 "import firmware.app; print(firmware.app.__file__)")
        assert "ROMFS image size: " in out
        assert out.strip().endswith("/rom/firmware/app.mpy")
    assert (tmp_path / "flash.rom").read_bytes()[:os.path.getsize(image)] == \
        open(image, "rb").read()


def test_no_romfs_on_a_stock_board(board):
    port, _ = board
    assert "ROMFS is not enabled on this device" in ok(port, "romfs", "query")
