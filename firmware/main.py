"""ESP32 entry point (copied to the board's root as main.py by the deploy tool).

Configuration and everything persisted live in /data on the littlefs partition. An invalid
configuration stops here with its message (the board was never built, nothing is energised);
anything else that ends the firmware -- MemoryError included -- has already opened the
contactors (app.run's safe state) and resets the board, so the next boot replays the
persisted sessions and outbox. The reset goes through the board module (hal.boards.esp32),
imported only then: only hal/boards/ touches `machine` (tests/test_layering.py); by then
app.run's frames are gone, so a collection frees the heap a MemoryError had filled.
"""

import gc
import sys

from firmware.app import run

try:
    run("esp32", "/data")
except ValueError as e:  # config.ConfigError: names the field and the rule
    print("mpevse: not started:", e)
except Exception as e:
    sys.print_exception(e)
    gc.collect()
    from hal.boards.esp32 import reset

    reset()
