"""Board for the ESP32: every port from machine.UART/Pin/PWM/ADC, numbers from the config.

UARTs: UART0 is the REPL, so only UART1 and UART2 are free. The reader (PN532 or RDM6300) and a
Modbus meter take one each; a PN532 *and* an RDM6300 *and* Modbus would need three and do not
fit -- the config names one reader, and sharing a UART (re-init with other pins) is not done
here. An RDM6300 only transmits, so its `tx` may be omitted.
CP and PP sense must be ADC1 pins (GPIO 32-39): ADC2 cannot be read while WiFi is on. They use
11 dB attenuation (linear ~150-2450 mV), which the default dividers in hal/pilot.py fit into.
Mirror contact: an NC auxiliary contact between the input and GND with the pull-up on, so
"contact closed" reads 0 (`pins.mirror_closed_level` overrides). GPIO 34-39 have no pull-ups:
use an external one there. Facts: shared/reference/hardware.md §6.2, §6.3.
"""

from machine import ADC, PWM, UART, Pin

from hal.boards.common import (
    ConfigError,
    EvseIO,
    evse_count,
    field,
    meter_type,
    per_evse,
    reader_type,
    tethered,
    wire,
)
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


def _adc1(pin, name):
    if pin not in ADC1_PINS:
        raise ConfigError("config field '%s' = %r is not an ADC1 pin (GPIO 32-39); ADC2 cannot "
                          "be read while WiFi is on" % (name, pin))
    return ADC(Pin(pin), atten=ADC.ATTN_11DB)


def _uart(section, default_baud, used):
    num = field(section, "uart")
    if num not in FREE_UARTS:
        raise ConfigError("config field '%s.uart' must be 1 or 2 (UART0 is the REPL)"
                          % section["_name"])
    if num in used:
        raise ConfigError("config field '%s.uart': UART%d is already taken" % (section["_name"],
                                                                                num))
    used.append(num)
    baud = field(section, "baud", default_baud)
    tx, rx = DEFAULT_UART_PINS[section["_name"]]
    rx = field(section, "rx", rx)
    tx = field(section, "tx", None if section.get("_rx_only") else tx)
    if tx is None:
        return UART(num, baudrate=baud, rx=Pin(rx), timeout=0, timeout_char=0,
                    rxbuf=UART_RXBUF)
    return UART(num, baudrate=baud, tx=Pin(tx), rx=Pin(rx), timeout=0, timeout_char=0,
                rxbuf=UART_RXBUF)


def _pins(config, role, n):
    """pins.<role>: one GPIO per EVSE, the board default where the config says None."""
    values = field(config, "pins." + role, [None] * n)
    if not isinstance(values, list) or len(values) != n:
        raise ConfigError("config field 'pins.%s' needs one entry per EVSE (%d)" % (role, n))
    out = []
    for i, v in enumerate(values):
        if v is None:
            if i >= len(DEFAULT_EVSE_PINS):
                raise ConfigError("config field 'pins.%s[%d]' has no default" % (role, i))
            v = DEFAULT_EVSE_PINS[i][role]
        out.append(v)
    return out


def _input(pin):
    if pin in NO_PULLUP_PINS:
        return Pin(pin, Pin.IN)
    return Pin(pin, Pin.IN, Pin.PULL_UP)


def build(config, reader=None, meter=None):
    """Board from config; `reader`/`meter` may pass already-open UART objects instead."""
    n = evse_count(config)
    pins = field(config, "pins", {})
    coil = _pins(config, "coil", n)
    mirror = _pins(config, "mirror", n)
    cp_pwm = _pins(config, "cp_pwm", n)
    cp_adc = _pins(config, "cp_adc", n)
    pp_adc = _pins(config, "pp_adc", n)
    io = []
    for i in range(n):
        pwm = PWM(Pin(cp_pwm[i]), freq=PWM_HZ, duty_u16=65535)  # steady +12 V: state A1
        pp = None
        if not tethered(config, i):
            if pp_adc[i] is None:
                raise ConfigError("config field 'pins.pp_adc[%d]' is missing (socket)" % i)
            pp = _adc1(pp_adc[i], "pins.pp_adc[%d]" % i)
        io.append(EvseIO(Pin(coil[i], Pin.OUT, value=0), _input(mirror[i]), pwm,
                         _adc1(cp_adc[i], "pins.cp_adc[%d]" % i), pp))

    used: list = []
    reader_uart = reader
    kind = reader_type(config)
    if kind != "none" and reader_uart is None:
        section = dict(field(config, "reader"), _name="reader", _rx_only=kind == "rdm6300")
        reader_uart = _uart(section, 115200 if kind == "pn532" else 9600, used)

    meter_uart = meter
    de_pin = None
    s0_pins = None
    mkind = meter_type(config)
    if mkind == "modbus":
        section = dict(field(config, "meter"), _name="meter")
        if meter_uart is None:
            meter_uart = _uart(section, 9600, used)
        de = field(section, "de_pin", DEFAULT_DE_PIN)
        de_pin = None if de is None else Pin(de, Pin.OUT, value=0)
    elif mkind == "s0":
        s0_pins = [_input(p) for p in per_evse(config, "meter.s0_pins", n)]

    return wire(config, io, reader_uart=reader_uart, meter_uart=meter_uart, de_pin=de_pin,
                s0_pins=s0_pins, cp_divider=field(pins, "cp_divider", None),
                pp_divider=field(pins, "pp_divider", None),
                mirror_closed_level=field(pins, "mirror_closed_level", 0))
