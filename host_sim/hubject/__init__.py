"""A Hubject (HBS) simulator for the CPO side of OICP 2.3: the other end of the bridge.

(Not ``host_sim/devices/hub.py``, which is the simulator's device loop.) Section numbers (§n)
refer to the fact sheet ``oicp-2.3-cpo.md``; nothing here reads ``../shared`` at run time.

Command line::

    python -m host_sim.hubject --listen HOST:PORT [--cards FILE]
        [--tls-cert F --tls-key F [--client-ca F]] [--control HOST:PORT]
        [--cpo-url URL [--cpo-cert F --cpo-key F] [--cpo-ca F]] [--cpo-timeout S] [--log FILE]

- ``--listen``: the OICP endpoints under ``/api/oicp`` (§0 paths). Port 0 picks a free port.
  With ``--tls-cert/--tls-key`` HTTPS; with ``--client-ca`` a client certificate that verifies
  against that file is REQUIRED (mutual TLS, §10), and the OperatorID of each request must
  match its CN or O (else HTTP 401 / 017). Plain HTTP only on a loopback address.
- ``--control``: the control API, plain HTTP, loopback only (default ``127.0.0.1:0``).
- ``--cpo-url``: the CPO's service URL up to and including ``/api/oicp``; RemoteStart/Stop go
  to ``{cpo-url}/charging/v21/providers/{ProviderID}/authorize-remote/start|stop`` (§0, §4)
  with the client certificate ``--cpo-cert/--cpo-key``, trusting ``--cpo-ca``. Hubject waits
  ``--cpo-timeout`` seconds for the answer (default 60, the hard limit of §4).
- ``--log``: one JSON line per call (``{"event": "call", ...}``); default stdout.
- ``--cards FILE``: ``{"cards": {"<UID upper hex or EvcoID>": {"status": "Authorized" |
  "NotAuthorized", "code": "000" | "102" | "210" | ..., "ProviderID": "DE-XYZ", "stop_ids":
  ["<UID or EvcoID>", ...]}}}`` (``code`` defaults to 000 / 102). Without it the demo set
  :data:`host_sim.hubject.server.DEFAULT_CARDS`: ``04A2B3C4D5E6F7`` Authorized by DE-8KZ
  (stop ids: itself and EvcoID ``DE-8KZ-C12AB34CD-7``), ``0A1B2C3D`` Authorized by DE*ICE,
  ``DEADBEEF`` NotAuthorized 210 (no contract), ``0BADCAFE`` NotAuthorized 102. Any other
  RFID card: NotAuthorized 102 (§1, §9).

Once both servers listen it prints exactly one line on stdout::

    {"event": "ready", "listen": "https://127.0.0.1:PORT/api/oicp", "control": "http://127.0.0.1:PORT"}

Operations served (POST, §0): AuthorizeStart, AuthorizeStop, ChargeDetailRecord,
ChargingNotifications, PushEvseStatus, PushEvseData. What each answers: see
:mod:`host_sim.hubject.server`; the body checks: :mod:`host_sim.hubject.schemas`.

Control API (JSON in and out; bad input -> 400 ``{"error": ...}``):

- ``GET /calls?since=N`` -> ``{"calls": [record, ...], "seq": last}``, records with seq > N:
  ``{seq, time, direction, operation, method, path, body, http_status, response, latency_ms,
  problems, warnings, fault, client_cert_subject}``.
- ``GET /sessions`` -> ``{"sessions": [...]}`` (SessionID, origin, state open/closed, OperatorID,
  EvseID, ProviderID, CPO-/EMPPartnerSessionID, Identification, notifications, cdr).
- ``GET /evses`` -> ``{"data": {EvseID: record}, "status": {EvseID: status}}`` (the pushes).
- ``POST /cards`` ``{"cards": {...}}`` merges cards (same shape as the file).
- ``POST /faults`` ``{"operation": "AuthorizeStart" | ... | "*", "mode": M, "count": N,
  "code"?: "017", "seconds"?: S, "http_status"?: H}``: the next N calls answer with M:
  ``http_500`` (body StatusCode 001), ``http_401`` (017), ``http_404`` (300), ``http_403``
  (an HTML page), ``http_429`` (text; ``seconds`` becomes Retry-After), ``timeout`` (hold the
  request ``seconds``, default 65, then process it late), ``status_only`` (HTTP ``http_status``,
  default 200, body ``{"StatusCode": {"Code": code}}`` only), ``malformed`` (HTTP 200, a
  truncated JSON body). Each faulty call is recorded with ``fault`` set.
- ``POST /latency`` ``{"operation"?: ..., "ms": N}``: delay before answering (ms), per
  operation or for all.
- ``POST /remote-start`` ``{"ProviderID", "EvseID", "UID" | "EvcoID" | "Identification",
  "SessionID"?, "EMPPartnerSessionID"?, "CPOPartnerSessionID"?, "PartnerProductID"?,
  "timeout"?: S, "raw"?: body}`` -> ``{"http_status", "body", "latency_ms", "SessionID",
  "problems", "forwarded"}``. A UID becomes RFIDMifareFamilyIdentification (recorded with a
  warning: §3 wants RemoteIdentification), an EvcoID RemoteIdentification. ``raw`` (any JSON
  value, or a string sent verbatim) replaces the body, for bad-body tests. With EVSE data
  pushed, an EvseID not among it is answered 603 (604 when not Hubject compatible) by Hubject
  itself, ``forwarded: false`` (§4). ``problems``: what is wrong with the CPO's answer.
- ``POST /remote-stop`` ``{"ProviderID", "EvseID", "SessionID", "force"?, "raw"?, "timeout"?}``
  likewise; an unknown or closed session gets 400 from Hubject itself unless ``force``.
- ``POST /reset`` ``{"sessions"?: true}``: forget calls, faults, latency (and sessions, EVSE
  data). Sequence numbers keep counting.
"""
