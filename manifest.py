# ruff: noqa: F821 -- include/require/package are MicroPython manifest functions
# Freezing mpevse into a MicroPython firmware image (README "Deploy to a charger"):
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/mpevse/manifest.py
# The port's own frozen modules, umqtt.simple from micropython-lib, and firmware/ + hal/.
include("$(PORT_DIR)/boards/manifest.py")
require("umqtt.simple")
package("firmware")
package("hal")
