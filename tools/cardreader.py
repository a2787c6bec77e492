"""Bench card reader: the firmware's own PN532/RDM6300 drivers on a host serial port.

    python -m tools.cardreader --port PORT [--reader pn532|rdm6300] [--baud N]
                               [--enroll FILE] [--count N] [--timeout S]

PORT is any pyserial URL: a device path, a pty, `socket://host:port`, `loop://`. One JSON line
per tap on stdout, e.g. {"uid": "04A1B2C3D4E5F6", "reader": "pn532", "bytes": 7}; RDM6300 lines
also carry "oicp", the 14-char OICP form of the 5-byte EM4100 id (see hal/rdm6300.py).
`--enroll FILE` adds each tapped card (its OICP UID) to a local authorization list in the
firmware's `LocalList.to_json()` format, bumping the version, written atomically (tmp + rename).
Reader failures go to stderr and the drivers keep retrying. Ctrl-C ends cleanly with status 0;
`--count N` ends after N taps (0), `--timeout S` ends after S seconds (1 if --count was not met).
"""

import argparse
import json
import math
import os
import sys

from firmware.authlists import LocalList
from hal import kinds as K
from hal.boards.host import HostUART
from hal.compat import sleep_ms, ticks_diff, ticks_ms
from hal.pn532 import PN532, why_unusable
from hal.rdm6300 import RDM6300, oicp_uid

DEFAULT_BAUD = {"pn532": 115200, "rdm6300": 9600}
BAUD_RANGE = (1200, 921600)  # firmware.config: reader.baud
MAX_TIMEOUT_S = 7 * 86400  # a week: beyond, ticks_ms arithmetic would alias on the ESP32 too


class EnrollError(Exception):
    """The --enroll list cannot be read or written; the message names the file and why."""


def read_list(path):
    """The local list at `path` (an empty one if the file does not exist); EnrollError if it
    is not JSON, not the firmware's LocalList format, or unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return LocalList()
    except (OSError, UnicodeError) as e:
        raise EnrollError("--enroll {}: cannot read it: {}".format(path, e)) from None
    try:
        return LocalList.from_json(json.loads(text))
    except ValueError as e:  # json, IdError and the list's own checks are ValueErrors
        raise EnrollError("--enroll {}: not a local list ({{\"version\": N, \"uids\": "
                          "[...]}} with OICP UIDs): {}".format(path, str(e)[:200])) from None
    except TypeError as e:
        raise EnrollError("--enroll {}: not a local list: {}".format(path, e)) from None


def check_enroll(path):
    """Before the port is opened: the list reads, and its folder takes the temporary file."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise EnrollError("--enroll {}: cannot write there (not a writable file in an existing "
                          "folder)".format(path))
    read_list(path)


def make_driver(kind, uart):
    if kind == "pn532":
        return PN532(uart)
    return RDM6300(uart)


def enroll(path, uid):
    """Add `uid` to the local list at `path` (created if missing); True if it was new.
    EnrollError (nothing written, a partial temporary file removed) if it cannot."""
    lst = read_list(path)
    if lst.contains(uid):
        return False
    lst.apply_delta(lst.version, lst.version + 1, add=[uid])
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(lst.to_json(), f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.isfile(tmp):  # our partial write (a directory there is not ours)
            os.remove(tmp)
        raise EnrollError("--enroll {}: cannot write it: {}".format(path, e)) from None
    return True


def tap_line(kind, uid, nbytes):
    rec = {"uid": uid, "reader": kind, "bytes": nbytes}
    if kind == "rdm6300":
        rec["oicp"] = oicp_uid(uid)
    return json.dumps(rec)


def run(args, out=sys.stdout, err=sys.stderr):
    """The poll loop; returns the exit status."""
    baud = args.baud or DEFAULT_BAUD[args.reader]
    driver = make_driver(args.reader, HostUART(args.port, baud))
    start = ticks_ms()
    limit_ms = None if args.timeout is None else int(args.timeout * 1000)
    taps = 0
    while True:
        now = ticks_ms()
        if limit_ms is not None and ticks_diff(now, start) >= limit_ms:
            if args.count:
                print("cardreader: timeout after {} of {} taps".format(taps, args.count),
                      file=err)
                return 1
            return 0
        ev = driver.poll(now)
        if ev is None:
            sleep_ms(2)
            continue
        kind, data = ev
        if kind == K.TAP:
            uid, nbytes = data
            print(tap_line(args.reader, uid, nbytes), file=out, flush=True)
            if args.enroll:
                key = oicp_uid(uid)
                added = enroll(args.enroll, key)
                print("cardreader: {} {} in {}".format(
                    "enrolled" if added else "already listed", key, args.enroll), file=err)
            taps += 1
            if args.count and taps >= args.count:
                return 0
        elif kind == K.FAILED:
            print("cardreader: {} reader on {} failed: {}; retrying".format(
                args.reader, args.port, data), file=err, flush=True)
        elif kind == K.OK:
            print("cardreader: {} reader is back".format(args.reader), file=err, flush=True)
        elif kind == K.UNUSABLE:
            print("cardreader: card {} unusable: {}; ignored".format(data, why_unusable(data)),
                  file=err, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tools.cardreader", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--port", required=True, help="pyserial URL or device path")
    p.add_argument("--reader", choices=("pn532", "rdm6300"), default="pn532")
    p.add_argument("--baud", type=int, help="%d..%d; default 115200 (pn532) / 9600 (rdm6300)"
                   % BAUD_RANGE)
    p.add_argument("--enroll", metavar="FILE", help="add tapped cards to this local list")
    p.add_argument("--count", type=int, default=0, help="exit after N taps (N >= 0)")
    p.add_argument("--timeout", type=float, help="exit after S seconds (S > 0)")
    args = p.parse_args(argv)
    if args.baud is not None and not BAUD_RANGE[0] <= args.baud <= BAUD_RANGE[1]:
        p.error("--baud must be %d..%d, got %d" % (BAUD_RANGE + (args.baud,)))
    if args.count < 0:
        p.error("--count must be >= 0 (0: no limit), got %d" % args.count)
    t = args.timeout
    if t is not None and (not math.isfinite(t) or not 0 < t <= MAX_TIMEOUT_S):
        p.error("--timeout must be a number of seconds > 0 and <= %d, got %r"
                % (MAX_TIMEOUT_S, t))
    if args.enroll is not None:
        try:
            check_enroll(args.enroll)
        except EnrollError as e:
            p.error(str(e))
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 0
    except EnrollError as e:  # the list changed or the disk filled since the start
        print("cardreader: {}".format(e), file=sys.stderr)
        return 2
    except OSError as e:  # serial.SerialException is an OSError: port gone or never there
        print("cardreader: {}: {}".format(args.port, e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
