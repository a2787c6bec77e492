"""The imperative shell: drivers in, charging core in the middle, actuators/store/console out.

Everything that touches time, ports or flash lives here; the core (`firmware.controller`) only
maps (event, now) to actions. One control-loop pass polls every driver once — each poll is
non-blocking by contract — feeds what they report to the core, executes the actions in order and
yields for a couple of milliseconds, so a pilot change reaches the contactor within one pass.
Nothing here waits for the network: the uplink (a later issue) will be another task that only
exchanges messages with this loop.

On the unix port and CPython the firmware runs as a process of the host simulator:
    micropython -m firmware.app --board unix --flash DIR --reader-port P --meter-port P
                                --simio-port P
It prints one JSON object per observable event on stdout and takes console commands on stdin
(`clear N`, `status`, `heap`, `quit`). On the ESP32, `main.py` calls `run("esp32", "/data")`.
"""

import gc
import json
import os
import sys
import time

try:
    import asyncio
except ImportError:  # MicroPython before v1.21
    import uasyncio as asyncio

from firmware import events as E
from firmware.authlists import LocalList
from firmware.controller import Controller
from firmware.ids import new_session_id
from firmware.store import Outbox, OutboxFull, Store
from firmware.unload import forget
from hal.compat import ticks_add, ticks_diff, ticks_ms
from hal.iec61851 import DUTY_OFF

LOOP_MS = 2  # one control-loop pass, then yield
GC_EVERY_MS = 1000  # controlled collection point; also where the live heap is sampled
PP_EVERY_MS = 500  # the cable rating cannot change while plugged; a slow look suffices
# AuthCache entries carry a ticks stamp: an entry older than the ESP32's 2**30 ms tick period
# would look fresh again, so expired ones are purged well within half of it.
PURGE_EVERY_MS = 3600000


def heap_used():
    """Live heap bytes (MicroPython's gc.mem_alloc); CPython has no such figure: 0."""
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0


def heap_free():
    return gc.mem_free() if hasattr(gc, "mem_free") else 0


def emit(ev, **fields):
    """One observable event as a JSON line on stdout (the simulator's console reads these)."""
    fields["ev"] = ev
    sys.stdout.write(json.dumps(fields))
    sys.stdout.write("\n")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


class Shell:
    """Owns the board, the core, the store and the outbox; runs one control-loop pass at a time."""

    def __init__(self, cfg, board, store, out=emit):
        self.cfg = cfg
        self.board = board
        self.store = store
        self.outbox = Outbox(store)
        self.out = out
        self.core = Controller(cfg, self._new_session_id)
        n = len(cfg["evses"])
        self.pp_amps = [None] * n
        self.meter_failed = [False] * n
        self.next_pp = 0
        self.next_gc = 0
        self.next_purge = 0
        self.heap_base = 0
        self.heap_peak = 0
        self.running = True
        self._act = {
            E.A_CONTACTOR: self._do_contactor,
            E.A_PWM: self._do_pwm,
            E.A_SEND: self._do_send,
            E.A_OUTBOX: self._do_outbox,
            E.A_PERSIST: self._do_persist,
            E.A_AUTH: self._do_auth,
            E.A_STATE: self._do_state,
            E.A_STATUS: self._do_status,
            E.A_SESSION_START: self._do_session_start,
            E.A_SESSION_END: self._do_session_end,
            E.A_REPLY: self._do_reply,
            E.A_ERROR: self._do_error,
        }

    @staticmethod
    def _new_session_id():
        return new_session_id(os.urandom(16))

    # -- boot --------------------------------------------------------------------------
    def boot(self, now):
        """Wall clock, uplink state, local list, then whatever a power cut left open."""
        for problem in self.store.problems:
            self.out("error", kind="store", message=str(problem))
        self.feed(E.EV_TIME, 0, int(time.time()), now)
        self.feed(E.EV_ONLINE, 0, False, now)  # no uplink in this build: offline policy rules
        self._load_local_list(now)
        for key in self.store.keys("session."):
            try:
                evse = int(key.split(".")[1])
            except ValueError:
                self.out("error", kind="restore", message="bad key " + key)
                continue
            self.feed(E.EV_RESTORE, evse, self.store.get(key), now)
        self.next_pp = now
        self.next_gc = now
        self.next_purge = ticks_add(now, PURGE_EVERY_MS)

    def _load_local_list(self, now):
        """The persisted list (kept current by updates) wins over the provisioned file."""
        data = self.store.get("locallist")
        if data is None:
            data = self.store.get(self.cfg["local_list_file"].rsplit(".json", 1)[0])
        if data is None:
            return
        try:
            lst = LocalList.from_json(data)
        except ValueError as e:
            self.out("error", kind="local_list", message=str(e))
            return
        self.feed(E.EV_LOCAL_LIST, 0, {"full": True, "version": lst.version, "uids": lst.uids()},
                  now)

    # -- the control loop --------------------------------------------------------------
    def feed(self, kind, evse, data, now):
        for action in self.core.step((kind, evse, data), now):
            self._act[action[0]](action[1], action[2], now)

    def poll_once(self, now):
        """One pass over every driver; each poll returns at once with at most one event."""
        b = self.board
        for i in range(len(b.pilots)):
            ev = b.pilots[i].poll(now)
            if ev is not None:
                state, diode = ev[1]
                self.out("pilot", evse=i + 1, state=state, diode_ok=diode)
                self.feed(E.EV_PILOT, i + 1, ev[1], now)
        for i in range(len(b.contactors)):
            ev = b.contactors[i].poll(now)
            if ev is not None:
                self.out("mirror", evse=i + 1, state=ev[0])
                self.feed(E.EV_CONTACTOR, i + 1, ev[0], now)
        self._poll_reader(now)
        if b.bus is not None:  # Modbus meters share one bus: the SharedBus takes turns
            ev = b.bus.poll(now)
            if ev is not None:
                self._on_meter(ev[0], ev[1], now)
        else:
            for i in range(len(b.meters)):
                if b.meters[i] is not None:  # meter type "none"
                    ev = b.meters[i].poll(now)
                    if ev is not None:
                        self._on_meter(i, ev, now)
        if ticks_diff(now, self.next_pp) >= 0:
            self.next_pp = ticks_add(now, PP_EVERY_MS)
            self._poll_proximity(now)
        deadline = self.core.next_deadline()
        if deadline is not None and ticks_diff(now, deadline) >= 0:
            self.feed(E.EV_TICK, 0, None, now)

    def _poll_reader(self, now):
        ev = self.board.reader.poll(now)
        if ev is None:
            return
        kind, data = ev
        if kind == "tap":
            uid = data[0]
            if data[1] == 5:  # EM4100 (RDM6300): 5 bytes -> a 7-byte OICP UID
                from hal.rdm6300 import oicp_uid

                uid = oicp_uid(uid)
            self.out("card", uid=uid, bytes=data[1])
            self.feed(E.EV_CARD, 0, uid, now)
        elif kind == "gone":
            self.feed(E.EV_CARD_GONE, 0, None, now)
        elif kind == "unusable":
            self.out("error", kind="reader", message="random UID {} is not a card id".format(data))
        elif kind == "failed":
            self.feed(E.EV_READER, 0, "failed", now)
            self.out("error", kind="reader", message="reader failed: {}".format(data))
        elif kind == "ok":
            self.feed(E.EV_READER, 0, "ok", now)

    def _on_meter(self, i, ev, now):
        """A reading, or an error; the fault is fed once when the driver declares the meter
        failed (after its own count of consecutive errors) and cleared by the next reading."""
        if ev[0] == "reading":
            if self.meter_failed[i]:
                self.meter_failed[i] = False
                self.feed(E.EV_METER_OK, i + 1, None, now)
            self.feed(E.EV_METER, i + 1, ev[1]["energy_wh"], now)
        elif ev[0] == "error" and self.board.meters[i].failed and not self.meter_failed[i]:
            self.meter_failed[i] = True
            self.feed(E.EV_METER_FAULT, i + 1, str(ev[1]), now)

    def _poll_proximity(self, now):
        for i, pp in enumerate(self.board.proximity):
            if pp is None:
                continue
            amps = pp.cable_amps()
            if amps != self.pp_amps[i]:
                self.pp_amps[i] = amps
                self.feed(E.EV_PP, i + 1, amps, now)

    def housekeeping(self, now):
        """Hourly cache purge, and a controlled GC point once a second; the live heap after it
        is what the `heap` command reports."""
        if ticks_diff(now, self.next_purge) >= 0:
            self.next_purge = ticks_add(now, PURGE_EVERY_MS)
            self.core.cache.purge(now)
        if ticks_diff(now, self.next_gc) < 0:
            return
        self.next_gc = ticks_add(now, GC_EVERY_MS)
        gc.collect()
        live = heap_used()
        if live > self.heap_peak:
            self.heap_peak = live

    # -- actions -----------------------------------------------------------------------
    def _do_contactor(self, evse, close, now):
        self.board.contactors[evse - 1].set(close, now)
        self.out("contactor", evse=evse, closed=close)

    def _do_pwm(self, evse, duty, now):
        self.board.pilots[evse - 1].set_duty(duty)
        self.out("pwm", evse=evse, duty=duty)

    def _do_send(self, evse, msg, now):
        # No uplink in this build: say so; the request's deadline makes the core go offline.
        self.out("error", kind="uplink", message="offline, not sent: " + msg.get("type", "?"))

    def _do_outbox(self, evse, msg, now):
        try:
            self.outbox.add(msg["id"], msg)
        except OutboxFull:
            self._make_room(msg)
        kind = msg.get("type")
        if kind == E.MSG_CDR:
            self.out("cdr", session_id=msg.get("SessionID"), record=msg)
        elif kind == E.MSG_NOTIFICATION:
            self.out("notification", type=msg.get("Type"), session_id=msg.get("SessionID"))

    def _make_room(self, msg):
        """Outbox full (uplink down for long): drop the oldest message that is superseded or
        optional (EVSE status, charging notification), loudly. A CDR is never dropped: if only
        CDRs wait, the outbox grows past its limit (flash holds thousands)."""
        for old_id, old in self.outbox.pending():
            if old.get("type") != E.MSG_CDR:
                self.outbox.ack(old_id)
                self.out("error", kind="outbox_full",
                         message="dropped {} {} to make room".format(old.get("type"), old_id))
                break
        else:
            self.outbox.limit += 1
            self.out("error", kind="outbox_full", message="only CDRs waiting; limit raised to "
                     + str(self.outbox.limit))
        self.outbox.add(msg["id"], msg)

    def _do_persist(self, evse, kv, now):
        self.store.put(kv[0], kv[1])

    def _do_auth(self, evse, data, now):
        self.out("auth", evse=evse, uid=data.get("uid"), result=data.get("result"),
                 code=data.get("code"))

    def _do_state(self, evse, name, now):
        self.out("state", evse=evse, state=name)

    def _do_status(self, evse, status, now):
        self.out("status", evse=evse, status=status)

    def _do_session_start(self, evse, session_id, now):
        self.out("session_start", evse=evse, session_id=session_id)

    def _do_session_end(self, evse, data, now):
        self.out("session_end", evse=evse, session_id=data.get("session_id"),
                 energy_kwh=data.get("energy_kwh"), reason=data.get("reason"))

    def _do_reply(self, evse, data, now):
        self.out("reply", **data)

    def _do_error(self, evse, data, now):
        self.out("error", evse=evse, kind=data[0], message=data[1])

    def safe_state(self, now):
        """Open every contactor and stop offering current: the last thing before the loop
        ends, also when it ends by an exception (a reset then replays the persisted state)."""
        for c in self.board.contactors:
            c.set(False, now)
        for p in self.board.pilots:
            p.set_duty(DUTY_OFF)

    # -- console -----------------------------------------------------------------------
    def command(self, line, now):
        """A console line from stdin; unknown or malformed commands are answered, not fatal."""
        words = line.split()
        if not words:
            return
        cmd = words[0]
        if cmd == "quit":
            self.running = False
        elif cmd == "heap":
            gc.collect()
            live = heap_used()
            self.out("heap", base=self.heap_base, live=live, peak=max(self.heap_peak, live),
                     working_peak=max(self.heap_peak, live) - self.heap_base,
                     free=heap_free())
        elif cmd == "status":
            self.out("snapshot", outbox=len(self.outbox), pp=self.pp_amps,
                     meter_failed=self.meter_failed)
        elif cmd == "clear" and len(words) == 2 and words[1].isdigit():
            self.feed(E.EV_CLEAR, int(words[1]), None, now)
        else:
            self.out("error", kind="console", message="unknown command: " + line.strip())


async def control_loop(shell):
    while shell.running:
        now = ticks_ms()
        shell.poll_once(now)
        shell.housekeeping(now)
        await asyncio.sleep(LOOP_MS / 1000)


async def console_loop(shell, stream):
    """Reads console lines without blocking the control loop (select.poll with 0 timeout)."""
    import select

    poller = select.poll()
    poller.register(stream, select.POLLIN)
    while shell.running:
        if poller.poll(0):
            line = stream.readline()
            if not line:  # stdin closed: the simulator is gone, stop cleanly
                shell.running = False
                break
            shell.command(line, ticks_ms())
        await asyncio.sleep(0.01)


# Needed only until the board is built; dropped afterwards so their code leaves the heap.
BOOT_ONLY = ("firmware.config", "hal.meter_models", "hal.boards.common")


def load_configuration(flash_dir):
    """config.json, validated; raises config.ConfigError naming the field and the rule."""
    from firmware import config

    with open(flash_dir + "/config.json") as f:
        return config.load(f.read())


def build_board(target, cfg, ports):
    if target == "unix":
        from hal.boards import unix as board
    elif target == "host":
        from hal.boards import host as board
    elif target == "esp32":
        from hal.boards import esp32 as board
    else:
        raise ValueError("unknown board " + target)
    return board.build(cfg, **ports)


def run(target, flash_dir, ports=None, console=None):
    start = ticks_ms()
    store = Store(flash_dir)
    cfg = load_configuration(flash_dir)
    board = build_board(target, cfg, ports or {})
    forget(*BOOT_ONLY)
    forget("hal.boards." + target)  # the builder; what it built lives in other modules
    gc.collect()
    base = heap_used()
    shell = Shell(cfg, board, store)
    now = ticks_ms()
    shell.boot(now)
    gc.collect()
    shell.heap_base = base
    emit("ready", boot_ms=ticks_diff(ticks_ms(), start), heap=heap_used())
    tasks = [control_loop(shell)]
    if console is not None:
        tasks.append(console_loop(shell, console))

    async def main():
        await asyncio.gather(*tasks)

    try:
        asyncio.run(main())
    finally:
        shell.safe_state(ticks_ms())  # whatever ended the loop, no contactor stays closed


def parse_args(argv):
    """--board B --flash DIR [--reader-port P] [--meter-port P] [--simio-port P]"""
    opts = {"board": "unix", "flash": "flash"}
    ports = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if not key.startswith("--") or i + 1 >= len(argv):
            raise ValueError("bad argument: " + key)
        name, value = key[2:], argv[i + 1]
        if name.endswith("-port"):
            ports[name[:-5]] = value
        elif name in opts:
            opts[name] = value
        else:
            raise ValueError("unknown option: " + key)
        i += 2
    return opts, ports


def main(argv):
    try:
        opts, ports = parse_args(argv)
        run(opts["board"], opts["flash"], ports, console=sys.stdin)
    except (ValueError, OSError) as e:  # config.ConfigError is a ValueError naming the field
        kind = "config" if type(e).__name__ == "ConfigError" else "startup"
        emit("error", kind=kind, message=str(e))
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
