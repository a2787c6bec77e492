"""`config.json`: validated once at start-up; every error names the field and the rule.

`load(source)` takes the JSON text (or an already parsed dict), rejects unknown keys at every
level (a typo must not silently fall back to a default), applies DEFAULTS and returns a new plain
dict. Hardware sections are checked for types and ESP32 facts only (hardware.md §6.3): GPIO
numbers that exist, CP/PP sensing on ADC1 (GPIO 32-39, ADC2 is unusable with WiFi on), and no
output on the input-only GPIO 34-39.
"""

import json

from firmware.ids import IdError, check_cp_id, check_evse_id
from hal.meter_models import MODELS

POLICIES = ("deny", "local_only", "local_and_cache", "free_vend")
MAX_EVSES = 4
# A full config.json (4 EVSEs, every pin, an uplink) is under 2 KB: a larger file is no config,
# and reading ~100 KB at once exhausts the ESP32's heap, so the size is checked before reading
MAX_BYTES = 8192
# The deepest a config goes is 3 (file -> evses -> one EVSE); deeper is refused before parsing,
# so hostile nesting never reaches json.loads' recursion (RecursionError, MemoryError)
MAX_DEPTH = 8
BOM = "\ufeff"  # a UTF-8 byte order mark, as some Windows editors write it: accepted

READER_TYPES = ("pn532", "rdm6300", "none")  # "none": no reader (free vend, remote only)
READER_BAUD = {"pn532": 115200, "rdm6300": 9600}
METER_TYPES = ("modbus", "s0", "none")  # "none": no meter (the boards accept it too)
METER_MODELS = tuple(sorted(MODELS))  # one table: hal.meter_models, a new model is a new row
PIN_ROLES = ("coil", "mirror", "cp_pwm", "cp_adc", "pp_adc")

# Generic ESP32 (no PSRAM): usable GPIOs; 6-11 drive the SPI flash; 34-39 are input-only.
ESP32_GPIOS = tuple(range(0, 6)) + tuple(range(12, 20)) + (21, 22, 23, 25, 26, 27) + \
    tuple(range(32, 40))
ESP32_INPUT_ONLY = tuple(range(34, 40))
ESP32_ADC1 = tuple(range(32, 40))

DEFAULTS = {
    "cp_id": None,  # required
    "evses": None,  # required: 1-4 objects, see EVSE_DEFAULTS
    "offline_policy": "local_only",
    "connection_timeout_s": 60,
    "auth_timeout_s": 10,
    "auth_cache": {"size": 100, "ttl_s": 86400},
    "meter_failure": "stop",
    "remote_start_rfid_window_s": 900,
    "progress_interval_s": 900,
    "stop_grace_s": 6,
    "mains_voltage_v": 230,
    # IEC 61851-1 state D (EV asks for ventilation): energise only where the site is ventilated
    "ventilation": False,
    # after a card leaves the field, the same card within this time is the same presentation
    # (a brief field drop-out must not read as a second tap that stops the session)
    "card_guard_ms": 2000,
    # hal.contactor: verdict window after a command, and how long after a release the mirror
    # may still show "closed" before the contactor is declared welded (late = a warning)
    "contactor": {"settle_ms": 250, "weld_confirm_ms": 1000},
    # the MQTT uplink (firmware.contract); url None: no uplink, the charge point stays offline
    "uplink": {"url": None, "user": None, "password": None, "ca_file": None,
               "keepalive_s": 30},
    "reader": {"type": "pn532", "uart": 1, "tx": None, "rx": None, "baud": None},
    "meter": {"type": "modbus", "model": "sdm630", "uart": 2, "baud": 9600, "addresses": None,
              "de_pin": None, "s0_pins": None, "pulses_per_kwh": 1000},
    "pins": {"coil": None, "mirror": None, "cp_pwm": None, "cp_adc": None, "pp_adc": None},
    "local_list_file": "authlist.json",
    "flash_dir": "flash",
}
# reader.baud None -> READER_BAUD[type]; meter.addresses None -> [1, 2, ...] one per EVSE;
# pins.* None -> the board's defaults (host and simulator boards need none).

EVSE_DEFAULTS = {"evse_id": None, "max_current_a": 16, "phases": 3, "cable": "socket"}


class ConfigError(ValueError):
    """config.json is unusable: `field` is the dotted path, `rule` what it must be."""

    def __init__(self, field, rule):
        super().__init__("config.json: {}: {}".format(field, rule))
        self.field = field
        self.rule = rule


def _int(field, v, lo, hi=None):
    if type(v) is not int:  # type, not isinstance: a bool is an int to isinstance
        raise ConfigError(field, "must be an integer, got {!r}".format(v))
    if v < lo or (hi is not None and v > hi):
        rng = "{}-{}".format(lo, hi) if hi is not None else ">= {}".format(lo)
        raise ConfigError(field, "must be {}, got {}".format(rng, v))
    return v


def _choice(field, v, choices):
    if v not in choices:
        raise ConfigError(field, "must be one of {}, got {!r}".format(
            ", ".join(choices), v))
    return v


def _obj(field, v, defaults):
    """A JSON object with only known keys, merged over `defaults` (a new dict)."""
    if not isinstance(v, dict):
        raise ConfigError(field, "must be an object")
    for k in v:
        if k not in defaults:
            raise ConfigError(k if field == "(file)" else field + "." + k,
                              "unknown key (known: {})".format(
                ", ".join(sorted(defaults))))
    out = {}
    for k in defaults:
        out[k] = v[k] if k in v else defaults[k]
    return out


def _name(field, v, slash=False):
    if not isinstance(v, str) or not 1 <= len(v) <= 64:
        raise ConfigError(field, "must be a name of 1-64 characters")
    allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
    if slash:
        allowed += "/"
    for c in v:
        if c not in allowed:
            raise ConfigError(field, "{!r} not allowed in a file name".format(c))
    if ".." in v.split("/"):
        raise ConfigError(field, "must not contain '..'")
    return v


def _gpio(field, v, output=False, adc1=False, optional=True):
    if v is None and optional:
        return None
    _int(field, v, 0)
    if v not in ESP32_GPIOS:
        raise ConfigError(field, "GPIO {} is not a usable ESP32 GPIO (0-5, 12-19, 21-23, "
                          "25-27, 32-39; 6-11 are the SPI flash)".format(v))
    if adc1 and v not in ESP32_ADC1:
        raise ConfigError(field, "GPIO {} is not on ADC1: CP/PP sensing needs GPIO 32-39 "
                          "(ADC2 cannot be read while WiFi is on)".format(v))
    if output and v in ESP32_INPUT_ONLY:
        raise ConfigError(field, "GPIO {} is input-only (34-39) and cannot drive an output"
                          .format(v))
    return v


def _per_evse_list(field, v, n):
    if not isinstance(v, list) or len(v) != n:
        raise ConfigError(field, "must be a list with one entry per EVSE ({})".format(n))
    return v


def _evse(field, v):
    e = _obj(field, v, EVSE_DEFAULTS)
    if e["evse_id"] is None:
        raise ConfigError(field + ".evse_id", "required")
    try:
        check_evse_id(e["evse_id"])
    except IdError as err:
        raise ConfigError(field + ".evse_id", str(err)) from None
    _int(field + ".max_current_a", e["max_current_a"], 6, 80)
    phases = e["phases"]
    if type(phases) is not int or phases not in (1, 3):  # true == 1: type first
        raise ConfigError(field + ".phases", "must be 1 or 3, got {!r}".format(e["phases"]))
    _choice(field + ".cable", e["cable"], ("socket", "tethered"))
    return e


def _reader(v):
    if isinstance(v, str):  # shorthand the boards also accept: "reader": "pn532"
        v = {"type": v}
    r = _obj("reader", v, DEFAULTS["reader"])
    _choice("reader.type", r["type"], READER_TYPES)
    _int("reader.uart", r["uart"], 0, 2)
    _gpio("reader.tx", r["tx"], output=True)
    _gpio("reader.rx", r["rx"])
    if r["baud"] is None:
        r["baud"] = READER_BAUD.get(r["type"], 9600)
    _int("reader.baud", r["baud"], 1200, 921600)
    return r


def _meter(v, n):
    m = _obj("meter", v, DEFAULTS["meter"])
    _choice("meter.type", m["type"], METER_TYPES)
    _choice("meter.model", m["model"], METER_MODELS)
    _int("meter.uart", m["uart"], 0, 2)
    _int("meter.baud", m["baud"], 1200, 115200)
    _int("meter.pulses_per_kwh", m["pulses_per_kwh"], 1, 100000)
    _gpio("meter.de_pin", m["de_pin"], output=True)
    if m["addresses"] is None:
        m["addresses"] = list(range(1, n + 1))
    addrs = _per_evse_list("meter.addresses", m["addresses"], n)
    for i, a in enumerate(addrs):
        _int("meter.addresses[{}]".format(i), a, 1, 247)
        if a in addrs[:i]:
            raise ConfigError("meter.addresses[{}]".format(i),
                              "Modbus address {} used twice on one bus".format(a))
    if m["s0_pins"] is not None:
        for i, p in enumerate(_per_evse_list("meter.s0_pins", m["s0_pins"], n)):
            _gpio("meter.s0_pins[{}]".format(i), p, optional=False)
    elif m["type"] == "s0":
        raise ConfigError("meter.s0_pins", "required for an s0 meter: one GPIO per EVSE")
    return m


def _pins(v, n):
    p = _obj("pins", v, DEFAULTS["pins"])
    for role in PIN_ROLES:
        if p[role] is None:
            continue
        for i, pin in enumerate(_per_evse_list("pins." + role, p[role], n)):
            _gpio("pins.{}[{}]".format(role, i), pin, output=role in ("coil", "cp_pwm"),
                  adc1=role in ("cp_adc", "pp_adc"), optional=role == "pp_adc")
    return p


def _scan(text):
    """What json.loads lets through: the same key twice in one object (the last would win
    silently) and nesting deeper than MAX_DEPTH. One pass over the text, strings skipped;
    syntax errors are left to json.loads. Raises ConfigError naming the key's field."""
    stack = []  # per open container: [keys seen (None for an array), field name, index]
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            k = j + 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            top = stack[-1] if stack else None
            if top is not None and top[0] is not None and k < n and text[k] == ":":
                try:
                    key = json.loads(text[i:j + 1])
                except ValueError:  # a broken string: json.loads reports it below
                    key = text[i + 1:j]
                field = top[1] + "." + key if top[1] else key
                if key in top[0]:
                    raise ConfigError(field[:100], "the same key twice in one object (remove "
                                      "one: which would win is not obvious)")
                top[0].append(key)
                top[2] = field
            i = j + 1
            continue
        if c == "{" or c == "[":
            if len(stack) >= MAX_DEPTH:
                raise ConfigError("(file)", "nested deeper than {} levels".format(MAX_DEPTH))
            top = stack[-1] if stack else None
            name = ""
            if top is not None:
                name = top[2] if top[0] is not None else "{}[{}]".format(top[1], top[2])
            stack.append([[] if c == "{" else None, name, 0 if c == "[" else name])
        elif c == "}" or c == "]":
            if stack:
                stack.pop()
        elif c == "," and stack and stack[-1][0] is None:
            stack[-1][2] += 1
        i += 1


def check_size(nbytes):
    """ConfigError if a config.json of `nbytes` is too large to be one (check before reading:
    firmware.app does, since 100 KB would not even fit the heap)."""
    if nbytes > MAX_BYTES:
        raise ConfigError("(file)", "{} bytes, more than {}: not a config.json".format(
            nbytes, MAX_BYTES))


def parse(source):
    """config.json's text (str or UTF-8 bytes) -> the parsed JSON value, checked before it is
    parsed: at most MAX_BYTES, UTF-8 (a BOM is accepted), no key twice in one object, at most
    MAX_DEPTH levels deep. ConfigError otherwise. (The simulator's runner reads a --config
    file through this too: one rule for both.)"""
    check_size(len(source))
    if isinstance(source, bytes):
        try:
            source = source.decode()
        except UnicodeError:
            raise ConfigError("(file)", "not UTF-8 text") from None
    if source.startswith(BOM):
        source = source[1:]
    _scan(source)
    try:
        return json.loads(source)
    except ValueError as e:
        raise ConfigError("(file)", "not valid JSON ({})".format(e)) from None


def load(source):
    """Validate `source` (JSON text, its UTF-8 bytes, or a dict) -> a new dict with every
    default filled in. Text goes through `parse` first."""
    if isinstance(source, (str, bytes)):
        source = parse(source)
    if not isinstance(source, dict):
        raise ConfigError("(file)", "must be a JSON object")
    cfg = _obj("(file)", source, DEFAULTS)
    if cfg["cp_id"] is None:
        raise ConfigError("cp_id", "required")
    try:
        check_cp_id(cfg["cp_id"])
    except IdError as err:
        raise ConfigError("cp_id", str(err)) from None
    evses = cfg["evses"]
    if evses is None:
        raise ConfigError("evses", "required: a list of 1-{} EVSE objects".format(MAX_EVSES))
    if not isinstance(evses, list) or not 1 <= len(evses) <= MAX_EVSES:
        raise ConfigError("evses", "must be a list of 1-{} EVSE objects".format(MAX_EVSES))
    cfg["evses"] = [_evse("evses[{}]".format(i), e) for i, e in enumerate(evses)]
    seen = []
    for i, e in enumerate(cfg["evses"]):
        if e["evse_id"] in seen:
            raise ConfigError("evses[{}].evse_id".format(i),
                              "EvseID {!r} is used twice".format(e["evse_id"]))
        seen.append(e["evse_id"])
    n = len(evses)
    _choice("offline_policy", cfg["offline_policy"], POLICIES)
    _int("connection_timeout_s", cfg["connection_timeout_s"], 10, 600)
    _int("auth_timeout_s", cfg["auth_timeout_s"], 1, 60)
    cache = cfg["auth_cache"] = _obj("auth_cache", cfg["auth_cache"], DEFAULTS["auth_cache"])
    _int("auth_cache.size", cache["size"], 0, 500)
    _int("auth_cache.ttl_s", cache["ttl_s"], 60, 518400)
    _choice("meter_failure", cfg["meter_failure"], ("stop", "continue"))
    _int("remote_start_rfid_window_s", cfg["remote_start_rfid_window_s"], 0, 3600)
    _int("progress_interval_s", cfg["progress_interval_s"], 300, 86400)
    _int("stop_grace_s", cfg["stop_grace_s"], 1, 6)
    _int("mains_voltage_v", cfg["mains_voltage_v"], 100, 300)
    if not isinstance(cfg["ventilation"], bool):
        raise ConfigError("ventilation", "must be true or false, got {!r}".format(
            cfg["ventilation"]))
    _int("card_guard_ms", cfg["card_guard_ms"], 0, 10000)
    ct = cfg["contactor"] = _obj("contactor", cfg["contactor"], DEFAULTS["contactor"])
    _int("contactor.settle_ms", ct["settle_ms"], 20, 2000)
    _int("contactor.weld_confirm_ms", ct["weld_confirm_ms"], ct["settle_ms"], 10000)
    up = cfg["uplink"] = _obj("uplink", cfg["uplink"], DEFAULTS["uplink"])
    url = up["url"]
    if url is not None:
        if not isinstance(url, str) or not (url.startswith("mqtt://")
                                            or url.startswith("mqtts://")):
            raise ConfigError("uplink.url", "must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        hostport = url.split("://", 1)[1]
        host, _, port = hostport.partition(":")
        if not host or "/" in hostport or (port and not (port.isdigit()
                                                         and 1 <= int(port) <= 65535)):
            raise ConfigError("uplink.url", "must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], "
                              "port 1-65535, no path")
    for k in ("user", "password", "ca_file"):
        v = up[k]
        if v is not None and (not isinstance(v, str) or not 1 <= len(v) <= 128):
            raise ConfigError("uplink." + k, "must be a string of 1-128 characters or null")
    if (up["user"] is None) != (up["password"] is None):
        raise ConfigError("uplink.password", "user and password go together")
    if up["ca_file"] is not None and url is not None and not url.startswith("mqtts://"):
        raise ConfigError("uplink.ca_file", "a CA file needs an mqtts:// url")
    if url is not None and url.startswith("mqtts://") and up["ca_file"] is None:
        raise ConfigError("uplink.ca_file", "required for mqtts:// (the broker is verified)")
    _int("uplink.keepalive_s", up["keepalive_s"], 5, 600)
    cfg["reader"] = _reader(cfg["reader"])
    cfg["meter"] = _meter(cfg["meter"], n)
    cfg["pins"] = _pins(cfg["pins"], n)
    # one GPIO, one job (the PP input of a tethered EVSE may be absent, never shared)
    used = {}
    pins = [("reader.tx", cfg["reader"]["tx"]), ("reader.rx", cfg["reader"]["rx"]),
            ("meter.de_pin", cfg["meter"]["de_pin"])]
    for i, p in enumerate(cfg["meter"]["s0_pins"] or ()):
        pins.append(("meter.s0_pins[{}]".format(i), p))
    for role in PIN_ROLES:
        for i, p in enumerate(cfg["pins"][role] or ()):
            pins.append(("pins.{}[{}]".format(role, i), p))
    for field, pin in pins:
        if pin is not None:
            if pin in used:
                raise ConfigError(field, "GPIO {} is already used by {}".format(pin, used[pin]))
            used[pin] = field
    _name("local_list_file", cfg["local_list_file"])
    _name("flash_dir", cfg["flash_dir"], slash=True)
    return cfg
