"""Provision a charger: its config.json, its own MQTT password, the broker's lines for it.

    python -m tools.provision --cp-id CP-0001 --evses 2 --operator-id DE*ABC
                              --broker-url mqtts://broker.example:8883 [--ca-file /data/ca.pem]
                              [--reader pn532|rdm6300|none] [--meter-model sdm630]
                              [--out DIR] [--rotate]

writes into DIR/<cp_id>/ (default DIR: provisioned/):
    config.json   validated by firmware.config; EvseIDs <operator-id>*E<cp digits/letters>*<n>,
                  each checked by firmware.ids; uplink user = cp_id (tools/mosquitto/acl keys
                  the charge point's topics on its user name), password = its own (0600: the
                  file holds the password)
    password      the device's MQTT password alone (0600)
    passwd.line   the line for Mosquitto's password file: `<cp_id>:$7$...`, a PBKDF2-SHA512
                  hash in mosquitto_passwd's own format (101 iterations, 12-byte salt), so the
                  plain password never reaches the broker host
    acl           the ACL lines for this charge point: a `user <cp_id>` block equal to what the
                  shipped pattern lines of tools/mosquitto/acl grant it (needed only on a broker
                  without those pattern lines)

The password is never printed: the log names the files. Run again for the same cp_id and it
keeps the password (config.json and the lines come out the same, the hash with a new salt
only if the password changes); `--rotate` makes a new one. Deploy with
`python -m tools.deploy --port PORT --config DIR/<cp_id>/config.json --ca ca.pem`.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys

ITERATIONS = 101  # mosquitto_passwd's default for $7$ (PBKDF2-SHA512)
SALT_BYTES = 12
PASSWORD_BYTES = 24  # 32 URL-safe characters (firmware.config: 1-128)
BACKEND_USER = "bridge"  # tools/mosquitto/acl: the backend's user name, never a charge point's
DEFAULT_OUT = "provisioned"


class ProvisionError(ValueError):
    """Refused input; the message names the option and the rule."""


def mosquitto_hash(password, salt=None):
    """`$7$<iterations>$<salt b64>$<PBKDF2-SHA512 b64>`: mosquitto_passwd's format."""
    salt = salt or os.urandom(SALT_BYTES)
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ITERATIONS)
    return "$7${}${}${}".format(ITERATIONS, base64.b64encode(salt).decode(),
                                base64.b64encode(dk).decode())


def verify_hash(password, line_hash):
    """True if `line_hash` ($7$...) is the hash of `password`."""
    _, seven, it, salt, dk = line_hash.split("$")
    want = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(it))
    return seven == "7" and secrets.compare_digest(want, base64.b64decode(dk))


def evse_ids(operator_id, cp_id, n):
    """<operator>*E<cp_id without - and _, upper case>*<1..n>, each a valid EvseID."""
    from firmware.ids import IdError, check_evse_id

    station = "".join(c for c in cp_id.upper() if c.isalnum())
    ids = ["{}*E{}*{}".format(operator_id.upper(), station, i + 1) for i in range(n)]
    for e in ids:
        try:
            check_evse_id(e)
        except IdError as err:
            raise ProvisionError("--operator-id {} / --cp-id {}: EvseID {} is not valid: {}"
                                 .format(operator_id, cp_id, e, err)) from None
    return ids


def acl_lines(cp_id):
    """The shipped pattern lines (tools/mosquitto/acl), spelt out for this user."""
    return ["user " + cp_id] + ["topic write mpevse/{}/{}".format(cp_id, t) for t in
                                ("availability", "birth", "health", "status/#", "up/#")] + \
        ["topic read mpevse/{}/down/#".format(cp_id)]


def make_config(cp_id, evses, operator_id, broker_url, ca_file, password, reader, meter_model):
    """The charger's config.json (dict), validated by the firmware's own rules."""
    from firmware import config

    cfg = {
        "cp_id": cp_id,
        "evses": [{"evse_id": e} for e in evse_ids(operator_id, cp_id, evses)],
        "reader": {"type": reader},
        "meter": {"type": "modbus", "model": meter_model},
        "uplink": {"url": broker_url, "user": cp_id, "password": password,
                   "ca_file": ca_file if broker_url.startswith("mqtts://") else None},
    }
    try:
        config.load(json.dumps(cfg))
    except ValueError as e:
        raise ProvisionError(str(e)) from None
    return cfg


def _write_private(path, text):
    """Write text to path with mode 0600 from the start (no window where others can read)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def provision(cp_id, evses, operator_id, broker_url, ca_file="/data/ca.pem", out=DEFAULT_OUT,
              rotate=False, reader="pn532", meter_model="sdm630", log=print):
    """Write the charger's files (module doc); -> their folder. Raises ProvisionError."""
    from firmware.ids import IdError, check_cp_id

    try:
        check_cp_id(cp_id)
    except IdError as e:
        raise ProvisionError("--cp-id {!r}: {}".format(cp_id, e)) from None
    if cp_id == BACKEND_USER:
        raise ProvisionError("--cp-id {!r} is the backend's MQTT user name".format(cp_id))
    folder = os.path.join(out, cp_id)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    pw_file = os.path.join(folder, "password")
    line_file = os.path.join(folder, "passwd.line")
    password = None
    if os.path.exists(pw_file) and not rotate:
        with open(pw_file) as f:
            password = f.read().strip() or None
    fresh = password is None
    if fresh:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
    cfg = make_config(cp_id, evses, operator_id, broker_url, ca_file, password, reader,
                      meter_model)
    _write_private(os.path.join(folder, "config.json"), json.dumps(cfg, indent=1) + "\n")
    _write_private(pw_file, password + "\n")
    old = None
    if os.path.exists(line_file):
        with open(line_file) as f:
            old = f.read().strip().partition(":")[2]
    if fresh or not old or not verify_hash(password, old):
        _write_private(line_file, "{}:{}\n".format(cp_id, mosquitto_hash(password)))
    with open(os.path.join(folder, "acl"), "w") as f:
        f.write("\n".join(acl_lines(cp_id)) + "\n")
    log("provision: {} {}: EvseIDs {}; config.json, password (0600), passwd.line, acl in {}"
        .format(cp_id, "new password" if fresh else "password kept",
                ", ".join(e["evse_id"] for e in cfg["evses"]), folder))
    return folder


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.provision",
                                description=__doc__.split("\n")[0])
    p.add_argument("--cp-id", required=True, help="charge point id = its MQTT user name")
    p.add_argument("--evses", type=int, required=True, help="number of EVSEs (1-4)")
    p.add_argument("--operator-id", required=True, help="OICP operator id, e.g. DE*ABC")
    p.add_argument("--broker-url", required=True, help="mqtts://HOST[:PORT] (or mqtt://)")
    p.add_argument("--ca-file", default="/data/ca.pem",
                   help="where the broker's CA lives on the board (default %(default)s)")
    p.add_argument("--reader", default="pn532", choices=("pn532", "rdm6300", "none"))
    p.add_argument("--meter-model", default="sdm630")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    p.add_argument("--rotate", action="store_true", help="a new password for an existing cp_id")
    a = p.parse_args(argv)
    try:
        provision(a.cp_id, a.evses, a.operator_id, a.broker_url, a.ca_file, a.out, a.rotate,
                  a.reader, a.meter_model)
    except ProvisionError as e:
        print("provision: {}".format(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
