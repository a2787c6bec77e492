"""ESP32 entry point (copied to the board's root as main.py by the deploy tool).

Configuration and everything persisted live in /data on the littlefs partition.
"""

from firmware.app import run

run("esp32", "/data")
