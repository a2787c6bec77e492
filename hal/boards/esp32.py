"""Board for the ESP32: every port from machine.UART/Pin/PWM/ADC, numbers from the config.

UARTs: UART0 is the REPL, so only UART1 and UART2 are free. The reader (PN532 or RDM6300) and a
Modbus meter take one each; a PN532 *and* an RDM6300 *and* Modbus would need three and do not
fit -- the config names one reader, and sharing a UART (re-init with other pins) is not done
here. An RDM6300 only transmits, so its `tx` may be omitted.
CP and PP sense must be ADC1 pins (GPIO 32-39): ADC2 cannot be read while WiFi is on. They use
11 dB attenuation (linear ~150-2450 mV), which the default dividers in hal/pilot.py fit into.
Mirror contact: an NC auxiliary contact between the input and GND with the pull-up on, so
"contact closed" reads 0. GPIO 34-39 have no pull-ups:
use an external one there. Facts: shared/reference/hardware.md §6.2, §6.3.
Wall clock: the RTC restarts at the epoch with the power; NTP (`ntptime`) sets it from the
MQTT transport's thread once the network is up (Esp32Board.sync_clock), never from the loop.

Events (Esp32Board.emit): stdout is the REPL on UART0, where a JSON line of 60-100 bytes takes
5-9 ms on the wire at 115200 Bd (10 bits a byte), which the write waits for once the UART's FIFO
is full -- inside the control loop, which must answer a pilot change within one pass. So every
event goes into `EventLog`, a ring of LOG_BYTES in RAM allocated once at boot (the last ~20-40
events; code that holds the board -- the uplink, a console -- reads `board.log.lines()`), and
only the rare events a person at the REPL needs (PRINTED: "ready", "error") are printed as
well. An event that cannot be encoded for want of heap is counted in `log_dropped`, never
raised: logging must not stop charging.
"""

import json
import time

import machine
from machine import ADC, PWM, UART, Pin

from firmware.timefmt import CLOCK_FLOOR_S
from hal.boards.board import Board
from hal.boards.common import ConfigError, wire
from hal.iec61851 import PWM_HZ

ADC1_PINS = (32, 33, 34, 35, 36, 37, 38, 39)
FREE_UARTS = (1, 2)
NO_PULLUP_PINS = (34, 35, 36, 37, 38, 39)
UART_RXBUF = 512
# Used where the config leaves a pin as None ("the board's default"): a plain ESP32-WROOM
# devkit, no flash/PSRAM pins (6-11, 16/17 on PSRAM boards excepted), strapping pins only as
# inputs. Per EVSE: coil, mirror, cp_pwm, cp_adc (ADC1), pp_adc (ADC1).
DEFAULT_EVSE_PINS = (
    {"coil": 26, "mirror": 27, "cp_pwm": 25, "cp_adc": 36, "pp_adc": 39},
    {"coil": 13, "mirror": 14, "cp_pwm": 19, "cp_adc": 34, "pp_adc": 35},
)
DEFAULT_UART_PINS = {"reader": (22, 21), "meter": (17, 16)}  # (tx, rx)
DEFAULT_DE_PIN = 4


NTP_RETRY_MS = 60000  # while the clock is unknown, NTP is asked at most this often (ms)
LOG_BYTES = 2048  # the in-RAM event ring (bytes of JSON lines)
PRINTED = ("ready", "error")  # events also printed on the REPL UART


class EventLog:
    """A ring of the last JSON event lines in one bytearray allocated once: `add(line)` copies
    a line in (the oldest are overwritten), `lines()` -> the whole lines held, oldest first."""

    def __init__(self, size=LOG_BYTES):
        self.buf = bytearray(size)
        self.end = 0  # where the next byte goes
        self.wrapped = False
        self.count = 0  # lines added since boot

    def add(self, line):
        buf = self.buf
        size = len(buf)
        data = line.encode() + b"\n"
        n = len(data)
        if n > size:  # a line longer than the ring: its tail
            data = data[n - size:]
            n = size
        i = self.end
        k = size - i if n > size - i else n
        buf[i:i + k] = data[:k]
        if k < n:
            buf[0:n - k] = data[k:]
        if i + n >= size:
            self.wrapped = True
        self.end = (i + n) % size
        self.count += 1

    def lines(self):
        buf = self.buf
        if not self.wrapped:
            return bytes(buf[:self.end]).decode().splitlines()
        data = bytes(buf[self.end:]) + bytes(buf[:self.end])
        cut = data.find(b"\n")  # the oldest line was partly overwritten: drop it
        return data[cut + 1:].decode().splitlines()


def reset():
    """Hard-reset the ESP32 (machine.reset: like the reset button; never returns). For
    firmware/main.py after the firmware died, when there may be no board object."""
    machine.reset()


class Esp32Board(Board):
    """The wired board plus the ESP32's wall clock from NTP."""

    def __init__(self, board):
        Board.__init__(self, board.reader, board.meters, board.contactors, board.pilots,
                       board.proximity, board.bus)
        self.clock_offset_s = board.clock_offset_s
        self.log = EventLog()
        self.log_dropped = 0  # events not logged for want of heap
        self.ntp_at = None  # ticks (ms) of the last NTP attempt; None: never
        self.ntp_error = None  # why the last attempt failed (str), None after a success

    def reset(self):
        """Hard-reset the ESP32 (never returns): the backend asked for a restart."""
        reset()

    def emit(self, ev, **fields):
        """The event sink on the ESP32: into the RAM ring, printed only if in PRINTED (module
        docstring). The line has the same JSON as off target."""
        fields["ev"] = ev
        try:
            line = json.dumps(fields)
        except MemoryError:  # a CDR line (~700 B) in a fragmented heap: count it, charge on
            self.log_dropped += 1
            return
        self.log.add(line)
        if ev in PRINTED:
            print(line)

    def sync_clock(self):
        """Set the RTC from NTP (`ntptime.settime()`, UTC) while it is below
        timefmt.CLOCK_FLOOR_S (restarted with the power); at most once per NTP_RETRY_MS.

        BLOCKS: a DNS look-up of the NTP host, then one UDP exchange of up to `ntptime.timeout`
        (1 s). So it is never called from the control loop: the MQTT transport calls it in its
        own thread after each connection (firmware/mqtt.py `clock_sync`), and the shell then
        reads the set RTC with wall_clock(), which does not block. A failure leaves the clock
        unknown and is kept in `ntp_error`. -> True if the clock is (now) past the floor."""
        if Board.wall_clock(self) >= CLOCK_FLOOR_S:
            return True
        t = time.ticks_ms()
        if self.ntp_at is not None and time.ticks_diff(t, self.ntp_at) < NTP_RETRY_MS:
            return False
        self.ntp_at = t
        import ntptime

        try:
            ntptime.settime()
        except OSError as e:  # no answer within ntptime.timeout, DNS failure, ...
            self.ntp_error = "ntp: " + str(e)
            return False
        self.ntp_error = None
        return Board.wall_clock(self) >= CLOCK_FLOOR_S


def _adc1(pin, name):
    if pin not in ADC1_PINS:
        raise ConfigError(name, "%r is not an ADC1 pin (GPIO 32-39); ADC2 cannot be read while "
                          "WiFi is on" % (pin,))
    return ADC(Pin(pin), atten=ADC.ATTN_11DB)


def _uart(config, name, used, rx_only=False):
    """UART1 or UART2 for config[name] ("reader" or "meter"), each taken once."""
    section = config[name]
    num = section["uart"]
    if num not in FREE_UARTS:
        raise ConfigError(name + ".uart", "must be 1 or 2 (UART0 is the REPL)")
    if num in used:
        raise ConfigError(name + ".uart", "UART%d is already taken" % num)
    used.append(num)
    default_tx, default_rx = DEFAULT_UART_PINS[name]
    rx = section.get("rx")  # only the reader's pins are configurable (firmware/config.py)
    if rx is None:
        rx = default_rx
    tx = section.get("tx")
    if tx is None and not rx_only:  # an RDM6300 only transmits: no TX pin unless asked
        tx = default_tx
    if tx is None:
        return UART(num, baudrate=section["baud"], rx=Pin(rx), timeout=0, timeout_char=0,
                    rxbuf=UART_RXBUF)
    return UART(num, baudrate=section["baud"], tx=Pin(tx), rx=Pin(rx), timeout=0,
                timeout_char=0, rxbuf=UART_RXBUF)


def _pin(config, role, i):
    """pins.<role>[i], or the board default where the config says None."""
    values = config["pins"][role]
    if values is not None and values[i] is not None:
        return values[i]
    if i >= len(DEFAULT_EVSE_PINS):
        raise ConfigError("pins.%s[%d]" % (role, i), "has no default")
    return DEFAULT_EVSE_PINS[i][role]


def _input(pin):
    if pin in NO_PULLUP_PINS:
        return Pin(pin, Pin.IN)
    return Pin(pin, Pin.IN, Pin.PULL_UP)


def build(config, reader=None, meter=None):
    """Board from a loaded config; `reader`/`meter` may pass already-open UART objects."""
    io = []
    for i, evse in enumerate(config["evses"]):
        pwm = PWM(Pin(_pin(config, "cp_pwm", i)), freq=PWM_HZ, duty_u16=65535)  # +12 V: A1
        pp = None
        if evse["cable"] != "tethered":
            pp = _adc1(_pin(config, "pp_adc", i), "pins.pp_adc[%d]" % i)
        io.append((Pin(_pin(config, "coil", i), Pin.OUT, value=0),
                   _input(_pin(config, "mirror", i)), pwm,
                   _adc1(_pin(config, "cp_adc", i), "pins.cp_adc[%d]" % i), pp))

    used: list = []
    kind = config["reader"]["type"]
    if kind != "none" and reader is None:
        reader = _uart(config, "reader", used, rx_only=kind == "rdm6300")
    de_pin = None
    s0_pins = None
    m = config["meter"]
    if m["type"] == "modbus":
        if meter is None:
            meter = _uart(config, "meter", used)
        de_pin = Pin(DEFAULT_DE_PIN if m["de_pin"] is None else m["de_pin"], Pin.OUT, value=0)
    elif m["type"] == "s0":
        s0_pins = [_input(p) for p in m["s0_pins"]]
    return Esp32Board(wire(config, io, reader_uart=reader, meter_uart=meter, de_pin=de_pin,
                           s0_pins=s0_pins, mirror_closed_level=0))
