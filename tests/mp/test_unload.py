"""Boot-only modules (config, board wiring, meter table) can be dropped after start-up and their
memory comes back: the built board keeps no reference to their functions or classes."""

import gc
import json
import sys

from firmware.unload import forget
from hal.compat import MICROPYTHON
from tests.mp.test_simio import FakeStream

BOOT = ("firmware.config", "hal.boards.unix", "hal.boards.common", "hal.meter_models")
CONFIG = {"cp_id": "cp1", "evses": [{"evse_id": "DE*AB7*E840*6487"},
                                    {"evse_id": "DE*AB7*E840*6488", "cable": "tethered"}],
          "reader": "none",
          "meter": {"type": "modbus", "model": "sdm630", "addresses": [1, 2]}}


def test_forget_removes_module_and_package_attribute():
    import firmware
    import firmware.config  # noqa: F401

    saved = {"firmware.config": sys.modules["firmware.config"]}

    assert "config" in firmware.__dict__
    assert forget("firmware.config", "firmware.no_such_module") == 1
    assert "firmware.config" not in sys.modules and "config" not in firmware.__dict__
    assert forget("firmware.config") == 0
    from firmware.config import load  # a later import loads it afresh

    assert load(json.dumps(CONFIG))["cp_id"] == "cp1"
    forget("firmware.config")
    _restore(saved)


def _restore(saved):
    """Put back modules other tests hold (CPython runs every test file in one process)."""
    for name, mod in saved.items():
        if mod is not None:
            sys.modules[name] = mod
            dot = name.rfind(".")
            setattr(sys.modules[name[:dot]], name[dot + 1:], mod)


def _boot():
    from firmware.config import load
    from hal.boards.unix import build

    cfg = load(json.dumps(CONFIG))
    return cfg, build(cfg, reader=FakeStream(), meter=FakeStream(), simio=FakeStream())


def _used():
    gc.collect()
    return gc.mem_alloc()


def test_dropping_boot_modules_frees_their_memory():
    # the run-time modules the board's objects come from stay loaded throughout
    import firmware.ids  # noqa: F401
    import hal.boards.board  # noqa: F401
    import hal.boards.simio  # noqa: F401
    import hal.boards.unix_uart  # noqa: F401
    import hal.contactor  # noqa: F401
    import hal.meters  # noqa: F401
    import hal.modbus  # noqa: F401
    import hal.pilot  # noqa: F401

    if not MICROPYTHON:
        saved = {m: sys.modules.get(m) for m in BOOT}
        forget(*BOOT)
        cfg, board = _boot()
        forget(*BOOT)
        assert not any(m in sys.modules for m in BOOT)
        _restore(saved)
        assert len(board.meters) == 2 and board.meters[1].plan == board.meters[0].plan
        assert board.proximity[1] is None and board.proximity[0] is not None
        return  # gc.mem_alloc exists only on MicroPython
    forget(*BOOT)
    before = _used()
    cfg, board = _boot()
    loaded = _used()
    forget(*BOOT)
    after = _used()
    print("boot modules: {} B loaded, {} B freed by forget()".format(
        loaded - before, loaded - after))
    assert board.meters[1].plan == board.meters[0].plan
    # The code of config + wiring + table comes back (~20 KB); what stays is the config, the
    # board and the qstrs (interned names are never freed by MicroPython).
    assert loaded - after > 12 * 1024, (loaded - after)
