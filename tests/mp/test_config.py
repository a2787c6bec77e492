"""config.json validation: defaults, and one row per rule (both interpreters)."""

import json

from firmware.config import DEFAULTS, ConfigError, load

EV1 = {"evse_id": "DE*AB7*E840*6487"}
EV2 = {"evse_id": "DE*AB7*E840*6488"}


def _base(**top):
    cfg = {"cp_id": "cp1", "evses": [dict(EV1)]}
    cfg.update(top)
    return cfg


def _two(**top):
    cfg = _base(evses=[dict(EV1), dict(EV2)])
    cfg.update(top)
    return cfg


def test_minimal_config_gets_every_default():
    cfg = load(json.dumps(_base()))
    assert cfg["cp_id"] == "cp1"
    assert cfg["evses"] == [{"evse_id": "DE*AB7*E840*6487", "max_current_a": 16, "phases": 3,
                             "cable": "socket"}]
    for key in ("offline_policy", "connection_timeout_s", "auth_timeout_s", "meter_failure",
                "remote_start_rfid_window_s", "progress_interval_s", "stop_grace_s",
                "mains_voltage_v", "local_list_file", "flash_dir"):
        assert cfg[key] == DEFAULTS[key], key
    assert cfg["auth_cache"] == {"size": 100, "ttl_s": 86400}
    assert cfg["reader"]["baud"] == 115200 and cfg["reader"]["uart"] == 1
    assert cfg["meter"]["addresses"] == [1] and cfg["meter"]["baud"] == 9600
    assert cfg["pins"] == DEFAULTS["pins"]
    assert set(cfg) == set(DEFAULTS)


def test_defaults_depend_on_type_and_evse_count():
    cfg = load(_two(reader={"type": "rdm6300"}))
    assert cfg["reader"]["baud"] == 9600 and cfg["meter"]["addresses"] == [1, 2]
    full = _two(
        evses=[dict(EV1, max_current_a=32, phases=1, cable="tethered"), dict(EV2)],
        offline_policy="local_and_cache", auth_cache={"size": 0},
        reader={"type": "pn532", "uart": 1, "tx": 17, "rx": 16, "baud": 115200},
        meter={"type": "s0", "s0_pins": [4, 5], "pulses_per_kwh": 800},
        pins={"coil": [25, 26], "mirror": [18, 19], "cp_pwm": [27, 23],
              "cp_adc": [32, 33], "pp_adc": [None, 36]},
    )
    cfg = load(full)
    assert cfg["evses"][0]["cable"] == "tethered" and cfg["auth_cache"]["ttl_s"] == 86400
    assert cfg["meter"]["s0_pins"] == [4, 5] and cfg["pins"]["pp_adc"] == [None, 36]


def test_shorthands_the_boards_accept():
    cfg = load(_base(reader="rdm6300", meter={"type": "none"}))
    assert cfg["reader"]["type"] == "rdm6300" and cfg["reader"]["baud"] == 9600
    assert load(_base(reader={"type": "none"}))["reader"]["type"] == "none"
    # what host_sim.runner.make_config writes
    sim = {"cp_id": "SIM01", "reader": "pn532",
           "evses": [{"evse_id": "DE*SIM*E0001*1", "max_current_a": 32, "cable": "socket"}],
           "meter": {"type": "modbus", "model": "sdm120", "baud": 9600, "addresses": [1]}}
    assert load(sim)["meter"]["model"] == "sdm120"


def test_contactor_windows_default_and_boundaries():
    assert load(_base())["contactor"] == {"settle_ms": 250, "weld_confirm_ms": 1000}
    for given, want in (
        ({"settle_ms": 300}, {"settle_ms": 300, "weld_confirm_ms": 1000}),
        ({"weld_confirm_ms": 2000}, {"settle_ms": 250, "weld_confirm_ms": 2000}),
        ({"settle_ms": 20, "weld_confirm_ms": 20}, {"settle_ms": 20, "weld_confirm_ms": 20}),
        ({"settle_ms": 2000, "weld_confirm_ms": 10000},
         {"settle_ms": 2000, "weld_confirm_ms": 10000}),
        ({}, {"settle_ms": 250, "weld_confirm_ms": 1000}),
    ):
        assert load(_base(contactor=given))["contactor"] == want, (given, want)


def test_load_does_not_mutate_its_input():
    src = _base()
    load(src)
    assert src == _base()


ROWS = (  # (bad config, field, rule fragment)
    ("{not json", "(file)", "not valid JSON"),
    ("[1, 2]", "(file)", "JSON object"),
    (_base(cp_idd="x"), "cp_idd", "unknown key"),
    ({"evses": [EV1]}, "cp_id", "required"),
    (_base(cp_id="cp/1"), "cp_id", "1-32 characters"),
    (_base(cp_id=""), "cp_id", "1-32 characters"),
    ({"cp_id": "cp1"}, "evses", "required"),
    (_base(evses=[]), "evses", "1-4"),
    (_base(evses=[EV1, EV2, EV1, EV2, EV1]), "evses", "1-4"),
    (_base(evses=EV1), "evses", "1-4"),
    (_base(evses=["DE*AB7*E1"]), "evses[0]", "must be an object"),
    (_base(evses=[{}]), "evses[0].evse_id", "required"),
    (_two(evses=[EV1, {"evse_id": "DE*AB*1"}]), "evses[1].evse_id",
     "EvseID 'DE*AB*1': must be <Country>*<OperatorID>*E<ID>"),
    (_two(evses=[EV1, dict(EV1)]), "evses[1].evse_id", "used twice"),
    (_base(evses=[dict(EV1, max_curent_a=16)]), "evses[0].max_curent_a", "unknown key"),
    (_base(evses=[dict(EV1, max_current_a=5)]), "evses[0].max_current_a", "6-80"),
    (_base(evses=[dict(EV1, max_current_a=81)]), "evses[0].max_current_a", "6-80"),
    (_base(evses=[dict(EV1, max_current_a=16.0)]), "evses[0].max_current_a", "integer"),
    (_base(evses=[dict(EV1, max_current_a=True)]), "evses[0].max_current_a", "integer"),
    (_base(evses=[dict(EV1, phases=2)]), "evses[0].phases", "1 or 3"),
    (_base(evses=[dict(EV1, phases=True)]), "evses[0].phases", "1 or 3"),
    (_base(evses=[dict(EV1, phases=1.0)]), "evses[0].phases", "1 or 3"),
    (_base(evses=[dict(EV1, cable="plug")]), "evses[0].cable", "socket, tethered"),
    (_base(offline_policy="allow"), "offline_policy", "one of deny, local_only"),
    (_base(connection_timeout_s=9), "connection_timeout_s", "10-600"),
    (_base(connection_timeout_s=601), "connection_timeout_s", "10-600"),
    (_base(auth_timeout_s=0), "auth_timeout_s", "1-60"),
    (_base(auth_timeout_s="10"), "auth_timeout_s", "integer"),
    (_base(auth_cache={"size": 501}), "auth_cache.size", "0-500"),
    (_base(auth_cache={"ttl_s": 59}), "auth_cache.ttl_s", "60-518400"),
    (_base(auth_cache={"ttl_s": 518401}), "auth_cache.ttl_s", "60-518400"),
    (_base(auth_cache={"ttl": 60}), "auth_cache.ttl", "unknown key"),
    (_base(auth_cache=100), "auth_cache", "must be an object"),
    (_base(meter_failure="ignore"), "meter_failure", "stop, continue"),
    (_base(remote_start_rfid_window_s=3601), "remote_start_rfid_window_s", "0-3600"),
    (_base(progress_interval_s=299), "progress_interval_s", "300"),
    (_base(stop_grace_s=7), "stop_grace_s", "1-6"),
    (_base(stop_grace_s=0), "stop_grace_s", "1-6"),
    (_base(mains_voltage_v=50), "mains_voltage_v", "100-300"),
    (_base(reader={"type": "rc522"}), "reader.type", "pn532, rdm6300"),
    (_base(reader="rc522"), "reader.type", "pn532, rdm6300"),
    (_base(reader=5), "reader", "must be an object"),
    (_base(reader={"uart": 3}), "reader.uart", "0-2"),
    (_base(reader={"tx": 35}), "reader.tx", "input-only"),
    (_base(reader={"rx": 7}), "reader.rx", "SPI flash"),
    (_base(reader={"rx": -1}), "reader.rx", ">= 0"),
    (_base(reader={"baud": 300}), "reader.baud", "1200-921600"),
    (_base(reader={"type": "pn532", "speed": 1}), "reader.speed", "unknown key"),
    (_base(meter={"type": "pulse"}), "meter.type", "modbus, s0"),
    (_base(meter={"model": "abb"}), "meter.model", "sdm630"),
    (_base(meter={"type": "s0"}), "meter.s0_pins", "required for an s0 meter"),
    (_two(meter={"addresses": [1]}), "meter.addresses", "one entry per EVSE (2)"),
    (_two(meter={"addresses": [3, 3]}), "meter.addresses[1]", "used twice"),
    (_base(meter={"addresses": [248]}), "meter.addresses[0]", "1-247"),
    (_base(meter={"de_pin": 39}), "meter.de_pin", "input-only"),
    (_base(meter={"pulses_per_kwh": 0}), "meter.pulses_per_kwh", "1-100000"),
    (_base(meter={"type": "s0", "s0_pins": [None]}), "meter.s0_pins[0]", "integer"),
    (_base(pins={"cp_adc": [25]}), "pins.cp_adc[0]", "ADC1"),
    (_base(pins={"pp_adc": [4]}), "pins.pp_adc[0]", "ADC1"),
    (_base(pins={"coil": [36]}), "pins.coil[0]", "input-only"),
    (_base(pins={"cp_pwm": [20]}), "pins.cp_pwm[0]", "not a usable ESP32 GPIO"),
    (_base(pins={"coil": [None]}), "pins.coil[0]", "integer"),
    (_two(pins={"coil": [25]}), "pins.coil", "one entry per EVSE (2)"),
    (_base(pins={"coil": 25}), "pins.coil", "one entry per EVSE"),
    (_base(pins={"relay": [25]}), "pins.relay", "unknown key"),
    (_base(pins={"coil": [25], "mirror": [25]}), "pins.mirror[0]", "already used by pins.coil"),
    (_base(reader={"tx": 25}, pins={"coil": [25]}), "pins.coil[0]", "already used by reader.tx"),
    (_base(contactor={"settle": 250}), "contactor.settle", "unknown key"),
    (_base(contactor=250), "contactor", "must be an object"),
    (_base(contactor={"settle_ms": "250"}), "contactor.settle_ms", "integer"),
    (_base(contactor={"settle_ms": 250.0}), "contactor.settle_ms", "integer"),
    (_base(contactor={"settle_ms": True}), "contactor.settle_ms", "integer"),
    (_base(contactor={"settle_ms": 19}), "contactor.settle_ms", "20-2000"),
    (_base(contactor={"settle_ms": 2001, "weld_confirm_ms": 5000}), "contactor.settle_ms",
     "20-2000"),
    (_base(contactor={"weld_confirm_ms": None}), "contactor.weld_confirm_ms", "integer"),
    (_base(contactor={"weld_confirm_ms": 1000.5}), "contactor.weld_confirm_ms", "integer"),
    (_base(contactor={"weld_confirm_ms": 249}), "contactor.weld_confirm_ms", "250-10000"),
    (_base(contactor={"settle_ms": 600, "weld_confirm_ms": 500}), "contactor.weld_confirm_ms",
     "600-10000"),  # a weld verdict before the contacts had time to move
    (_base(contactor={"weld_confirm_ms": 10001}), "contactor.weld_confirm_ms", "250-10000"),
    (_base(local_list_file="../x.json"), "local_list_file", "'/' not allowed"),
    (_base(local_list_file=""), "local_list_file", "1-64"),
    (_base(flash_dir="a/../b"), "flash_dir", "'..'"),
)


def test_bad_config_rows():
    for i, (bad, field, fragment) in enumerate(ROWS):
        src = bad if isinstance(bad, str) else json.dumps(bad)
        try:
            load(src)
        except ConfigError as e:
            assert e.field == field, (i, field, e.field, str(e))
            assert fragment in e.rule, (i, fragment, e.rule)
            assert str(e).startswith("config.json: " + field + ": "), str(e)
            continue
        raise AssertionError("row {} accepted: {!r}".format(i, bad))


def test_config_error_is_a_value_error():
    try:
        load({"cp_id": "cp1"})
    except ValueError as e:
        assert isinstance(e, ConfigError)
