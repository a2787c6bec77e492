"""The OICP 2.3 bridge between the charge points (MQTT, firmware/contract.py) and Hubject
(HTTPS with mutual TLS): `python -m tools.bridge` (flags: tools/bridge/config.py).

Modules, one job each:
  oicp       the mapping contract message <-> OICP body, pure functions (the error-code table)
  budget     per-operation calls-per-minute budgets (Hubject's AUP), 429 back-off
  hubject    the HTTP client toward Hubject (mutual TLS, deadlines, failures -> codes)
  registry   EvseID -> charge point and availability, from retained births / last wills
  mqttlink   the MQTT connection, subscriptions (shared-subscription ready), dispatch
  commands   down commands with a fresh id, waiting for the matching up/reply
  authorize  up/authorize -> eRoamingAuthorizeStart/Stop -> down/authorize
  server     the RemoteStart/RemoteStop endpoints Hubject calls, idempotent on SessionID
  status     GET /status on the loopback admin port; `python -m tools.bridge status` (table)
  log        one JSON line per OICP call on stdout, UIDs masked
  config     flags and the JSON config file
  app        everything assembled; the ready line
"""
