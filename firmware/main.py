"""ESP32 entry point (copied to the board's root as main.py by the deploy tool).

Configuration and everything persisted live in /data on the littlefs partition. An invalid
configuration stops here with its message (the board was never built, nothing is energised);
anything else that ends the firmware -- MemoryError included -- has already opened the
contactors (app.run's safe state) and resets the board, so the next boot replays the
persisted sessions and outbox.
"""

import sys

import machine

from firmware.app import run

try:
    run("esp32", "/data")
except ValueError as e:  # config.ConfigError: names the field and the rule
    print("mpevse: not started:", e)
except Exception as e:
    sys.print_exception(e)
    machine.reset()
