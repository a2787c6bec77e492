"""Virtual Eastron SDM120 / SDM630 meters as Modbus RTU slaves on one RS-485 bus (hardware.md §3).

A frame ends after t3.5 of silence (3.5 character times of 11 bits; fixed 1.75 ms above 19200
Bd). Then each slave behaves like the real one:

* FC 0x04 input registers: measurements as IEEE-754 float32, big-endian, high word first.
* FC 0x03 / 0x10 holding registers: the config floats 0x0012 parity/stop, 0x0014 slave address,
  0x001C baud code. Written values are stored and take effect at `power_cycle()`, as on the
  meter (which needs a power cycle after "- SET -").
* exception 0x02 for a register it does not have, 0x03 for a bad quantity/value, 0x01 for a
  function code it does not implement; no answer to a bad CRC, to another slave's address, or to
  the broadcast address 0 (all counted).

Import energy integrates the power the EV draws: P = Σ (230 V × phase current) over the phases
the meter measures (L1 only for the single-phase SDM120), sampled from `source(now)`. The hub
wakes the bus at every change (contactor switch times are events), so the integral is exact for
the piecewise-constant currents of the simulation. `set_import_kwh` replaces the register (a
meter swapped for one with another reading, or reset to 0); nothing else ever makes it go down.

A babbling bus (`SdmBus.babble`: a broken slave, a wrong baud rate, a second master) sends
noise bytes back to back at the bus rate, so the line is never silent for t3.5; no meter
answers meanwhile (issue 16: the master must give up within its deadline, not wait forever).

Timing: the reply leaves t3.5 + `response_s` (10 ms) after the request, plus (with `wire_time`)
the time request and reply would take on the wire at the bus baud rate, since a pty delivers
them instantly: an SDM120 at 2400 Bd answers an 8-byte read in about 36.7 + 16 + 10 + 41.3 ms.
"""

import struct

MODELS = {
    # model: (default baud, phases, allowed baud codes -> baud)
    "sdm120": (2400, 1, {0: 2400, 1: 4800, 2: 9600, 5: 1200}),
    "sdm630": (9600, 3, {0: 2400, 1: 4800, 2: 9600, 3: 19200, 4: 38400}),
}
REG_PARITY, REG_ADDRESS, REG_BAUD = 0x0012, 0x0014, 0x001C
MAX_READ = 125
MAX_WRITE = 123
FAULTS = ("ok", "fail")
# Highest import reading `set_import_kwh` accepts (kWh): the register is a float32 (§3.2), whose
# step is already 1/16 kWh between 2^19 and 2^20 kWh, so above this a session's energy would
# be lost in the rounding rather than measured (derived).
MAX_KWH = 999999.0
# What a babbling bus sends: no slave address 1..247 starts a frame with 0x00 or 0xFF, and the
# pattern never forms a CRC-valid frame
BABBLE = b"\x00\xff"


def crc16(data):
    """CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame):
    crc = crc16(frame)
    return bytes(frame) + bytes((crc & 0xFF, crc >> 8))


def exception_frame(address, function, code):
    return with_crc(bytes((address, function | 0x80, code)))


class SdmMeter:
    """One meter. `source(now)` returns the (L1, L2, L3) amps flowing through it."""

    def __init__(self, address=1, model="sdm120", source=None, *, voltage=230.0,
                 frequency=50.0, import_kwh=0.0):
        if model not in MODELS:
            raise ValueError("unknown meter model %r (one of %s)" % (model, ", ".join(MODELS)))
        if not 1 <= address <= 247:
            raise ValueError("Modbus slave address must be 1..247")
        self.model = model
        self.address = address
        self.phases = MODELS[model][1]
        self.source = source if source is not None else (lambda now: (0.0, 0.0, 0.0))
        self.voltage = voltage
        self.frequency = frequency
        self.energy_wh = [import_kwh * 1000.0 / self.phases] * self.phases
        self.fault = "ok"
        self.holding = {REG_PARITY: 0.0, REG_ADDRESS: float(address), REG_BAUD: 0.0}
        self.holding[REG_BAUD] = float(_baud_code(model, MODELS[model][0]))
        self._amps = (0.0,) * self.phases
        self._last_t = None

    def set_fault(self, name, now=0.0):
        if name not in FAULTS:
            raise ValueError("unknown meter fault %r (one of %s)" % (name, ", ".join(FAULTS)))
        self.fault = name

    def set_import_kwh(self, kwh, now):
        """From `now` on the import register reads `kwh` (split evenly over the phases the
        meter measures); the energy up to `now` is integrated first, so it is not added later."""
        if isinstance(kwh, bool) or not isinstance(kwh, (int, float)) \
                or not 0.0 <= kwh <= MAX_KWH:
            raise ValueError("import register must be 0..%g kWh, got %r" % (MAX_KWH, kwh))
        self.advance(now)
        self.energy_wh = [kwh * 1000.0 / self.phases] * self.phases

    def power_cycle(self):
        """Apply the written configuration (the slave address) as after a power cycle."""
        self.address = int(self.holding[REG_ADDRESS])

    # ---- physics ---------------------------------------------------------------------------
    def advance(self, now):
        """Integrate energy up to `now` with the currents of the previous step, then resample."""
        if self._last_t is not None and now > self._last_t:
            dt_h = (now - self._last_t) / 3600.0
            for i in range(self.phases):
                self.energy_wh[i] += self.voltage * self._amps[i] * dt_h
        if self._last_t is None or now >= self._last_t:
            self._last_t = now
            amps = self.source(now)
            self._amps = tuple(float(amps[i]) for i in range(self.phases))

    def import_kwh(self):
        return sum(self.energy_wh) / 1000.0

    def power_w(self):
        return sum(self.voltage * a for a in self._amps)

    def input_registers(self):
        """Register address -> float value (each spans 2 registers)."""
        v, amps = self.voltage, self._amps
        kwh = self.import_kwh()
        regs = {0x0046: self.frequency, 0x0048: kwh, 0x004A: 0.0, 0x0156: kwh}
        for i in range(self.phases):
            regs[0x0000 + 2 * i] = v
            regs[0x0006 + 2 * i] = amps[i]
            regs[0x000C + 2 * i] = v * amps[i]
        if self.model == "sdm630":
            regs[0x0034] = self.power_w()
            for i in range(3):
                regs[0x0166 + 2 * i] = self.energy_wh[i] / 1000.0
        return regs

    # ---- Modbus PDU ------------------------------------------------------------------------
    def handle(self, fc, data):
        """Response PDU (function byte onwards) for a request PDU addressed to this meter."""
        if fc == 0x04:
            return self._read(fc, data, self.input_registers())
        if fc == 0x03:
            return self._read(fc, data, self.holding)
        if fc == 0x10:
            return self._write(data)
        return bytes((fc | 0x80, 0x01))

    def _read(self, fc, data, table):
        if len(data) != 4:
            return bytes((fc | 0x80, 0x03))
        start, qty = struct.unpack(">HH", data)
        if not 1 <= qty <= MAX_READ:
            return bytes((fc | 0x80, 0x03))
        words = bytearray()
        for reg in range(start, start + qty):
            base = reg & ~1
            if base not in table:
                return bytes((fc | 0x80, 0x02))
            packed = struct.pack(">f", table[base])
            words += packed[0:2] if reg == base else packed[2:4]
        return bytes((fc, len(words))) + bytes(words)

    def _write(self, data):
        if len(data) < 5:
            return b"\x90\x03"
        start, qty, count = struct.unpack(">HHB", data[:5])
        values = data[5:]
        if not 1 <= qty <= MAX_WRITE or count != 2 * qty or len(values) != count:
            return b"\x90\x03"
        if start & 1 or qty & 1:
            return b"\x90\x02"  # config values are whole floats
        new = {}
        for k in range(qty // 2):
            reg = start + 2 * k
            if reg not in self.holding:
                return b"\x90\x02"
            (value,) = struct.unpack(">f", values[4 * k : 4 * k + 4])
            if not self._valid_config(reg, value):
                return b"\x90\x03"
            new[reg] = value
        self.holding.update(new)
        return b"\x10" + data[:4]

    def _valid_config(self, reg, value):
        if value != int(value):
            return False
        if reg == REG_PARITY:
            return 0 <= value <= 3
        if reg == REG_ADDRESS:
            return 1 <= value <= 247
        return int(value) in MODELS[self.model][2]

    def status(self):
        return {"model": self.model, "address": self.address, "fault": self.fault,
                "power_w": round(self.power_w(), 1), "import_kwh": round(self.import_kwh(), 6),
                "amps": list(self._amps)}


def _baud_code(model, baud):
    for code, b in MODELS[model][2].items():
        if b == baud:
            return code
    raise ValueError("%s cannot run at %d Bd" % (model, baud))


class SdmBus:
    """The RS-485 bus: one serial line, any number of meters with distinct addresses."""

    def __init__(self, meters, *, baud=None, response_s=0.010, wire_time=True):
        self.meters = list(meters)
        addresses = [m.address for m in self.meters]
        if len(set(addresses)) != len(addresses):
            raise ValueError("two meters share a slave address: %s" % addresses)
        if baud is None:
            baud = MODELS[self.meters[0].model][0] if self.meters else 9600
        self.baud = baud
        self.char_s = 11.0 / baud
        self.t35_s = 0.00175 if baud > 19200 else 3.5 * self.char_s
        # A pty moves bytes at once; add the time the frames would spend on the RS-485 wire.
        self.wire_time = wire_time
        self.response_s = response_s
        self._rx = bytearray()
        self._rx_last = 0.0
        self._out = []  # [(due, bytes)]
        self.counters = {}
        self.babble = False
        self._babble_t = 0.0  # hub time up to which the babble has been sent

    def set_babble(self, on, now):
        """Start/stop a stream of noise that never leaves t3.5 of silence (module doc)."""
        if on and not self.babble:
            self._babble_t = now
        self.babble = bool(on)

    def _count(self, key):
        self.counters[key] = self.counters.get(key, 0) + 1

    def feed(self, data, now):
        if self._rx and now >= self._rx_last + self.t35_s:
            self._frame(self._rx_last, now)  # silence already ended the previous frame
        self._rx += data
        self._rx_last = now

    def pending(self, now):
        for m in self.meters:
            m.advance(now)
        if self._rx and now >= self._rx_last + self.t35_s:
            self._frame(self._rx_last, now)
        out = bytearray()
        keep = []
        for due, frame in self._out:
            if due <= now:
                out += frame
            else:
                keep.append((due, frame))
        self._out = keep
        if self.babble:
            # one noise byte per character time since the last ones (at most a pty's worth)
            n = min(int((now - self._babble_t) / self.char_s), 256)
            if n > 0:
                self._babble_t = max(self._babble_t + n * self.char_s, now - self.char_s)
                out += BABBLE * (n // 2) + BABBLE[: n % 2]
                self.counters["babble_bytes"] = self.counters.get("babble_bytes", 0) + n
        return bytes(out)

    def next_event(self, now):
        times = [due for due, _ in self._out]
        if self.babble:  # well within t3.5: two characters later
            times.append(self._babble_t + 2 * self.char_s)
        if self._rx:
            times.append(self._rx_last + self.t35_s)
        return min(times) if times else None

    def status(self, now=None):
        return {"baud": self.baud, "counters": dict(self.counters),
                "meters": [m.status() for m in self.meters]}

    def _frame(self, last_byte_t, now):
        frame = bytes(self._rx)
        del self._rx[:]
        self._count("frames")
        if len(frame) < 4:
            self._count("short")
            return
        if crc16(frame[:-2]) != frame[-2] | (frame[-1] << 8):
            self._count("bad_crc")
            return
        address = frame[0]
        if address == 0:
            self._count("broadcast_ignored")
            return
        meter = None
        for m in self.meters:
            if m.address == address:
                meter = m
        if meter is None:
            self._count("other_address")
            return
        if meter.fault == "fail" or self.babble:
            self._count("failed_silent")
            return
        meter.advance(now)  # values as sampled when the request is decoded
        pdu = meter.handle(frame[1], frame[2:-2])
        if pdu[0] & 0x80:
            self._count("exceptions")
        reply = with_crc(bytes((address,)) + pdu)
        due = last_byte_t + self.t35_s + self.response_s
        if self.wire_time:
            due += (len(frame) + len(reply)) * self.char_s
        self._out.append((due, reply))
