"""The host simulator's command line.

    python -m host_sim run [--interpreter cpython|micropython [--no-romfs]] [--evses N]
                           [--local-card UID ...] [--reader pn532|rdm6300] [--config FILE]
                           [--reader-port PORT] [--flash DIR]
                           [--broker mqtt[s]://HOST[:PORT]] [--cp-id ID]
                           [--broker-ca FILE] [--broker-user U --broker-password P]
    python -m host_sim scenario FILE [--interpreter cpython|micropython [--no-romfs]] [-v]
                                [--broker ...]
    python -m host_sim demo [--interpreter cpython|micropython]
    python -m host_sim board --flash DIR [--version V] [--flash-size B] [--romfs-size B]

`run` reads console commands (host_sim.console) from stdin, one per line, and writes one JSON
object per line to stdout for every event; end of input means `quit`. `--reader-port` is bench
mode: a real PN532/RDM6300 on a USB-serial adapter (any pyserial URL) replaces the virtual
reader; only the CPython host board can open it. `--broker` connects the charge point's uplink
to that MQTT broker through the simulated network (console `broker down|up|stall`; see
host_sim.runner); `--cp-id` replaces the default SIM01 (the EvseIDs stay DE*SIM*E0001*<n>).
`--no-romfs`: MicroPython imports the plain .mpy tree (build/mpy) instead of mapping the ROMFS
image, as a board without a ROMFS partition does (bytecode in the heap: -X heapsize=256k).
"""

import argparse
import json
import queue
import sys
import threading

from host_sim import runner


def _run(args):
    out = sys.stdout

    def print_event(event):
        out.write(json.dumps(event) + "\n")
        out.flush()

    lines = queue.Queue()

    def read_stdin():  # a thread, so a silent console never blocks the simulation
        # bytes, decoded here: a byte that is not UTF-8 must reach host_sim.console (which
        # refuses the line, naming it) instead of ending this thread with UnicodeDecodeError
        for raw in sys.stdin.buffer:
            lines.put(raw.decode("utf-8", "surrogateescape"))
        lines.put(None)

    try:
        sim = runner.Simulation(
            interpreter=args.interpreter, evses=args.evses, reader=args.reader,
            local_cards=args.local_card or (), config_file=args.config,
            reader_port=args.reader_port, flash=args.flash, on_event=print_event,
            romfs=not args.no_romfs, **_broker_options(args))
    except (runner.RunnerError, ValueError) as e:
        print("host_sim run: {}".format(e), file=sys.stderr)
        return 2
    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        with sim:
            while not sim.quit_requested:
                try:
                    line = lines.get_nowait()
                except queue.Empty:
                    sim.pump(0.02)
                    continue
                if line is None:
                    break
                sim.command_line(line)
    except runner.RunnerError as e:
        print("host_sim run: {}".format(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 1 if sim.fatal is not None else 0


def _scenario(args):
    from host_sim import scenario

    return scenario.main(args.file, interpreter=args.interpreter, verbose=args.verbose,
                         romfs=not args.no_romfs, **_broker_options(args))


def _broker_options(args):
    return {"broker": args.broker, "cp_id": args.cp_id, "broker_ca": args.broker_ca,
            "broker_user": args.broker_user, "broker_password": args.broker_password}


def _add_broker_flags(p):
    p.add_argument("--broker", metavar="URL",
                   help="mqtt://HOST[:PORT] or mqtts://HOST[:PORT]: the uplink's broker, reached "
                        "through the simulated network (console: broker down|up|stall)")
    p.add_argument("--cp-id", metavar="ID", help="the charge point's id (default SIM01)")
    p.add_argument("--broker-ca", metavar="FILE",
                   help="the CA certificate that signed an mqtts broker's certificate")
    p.add_argument("--broker-user", metavar="U", help="the uplink's MQTT user name")
    p.add_argument("--broker-password", metavar="P", help="the uplink's MQTT password")


def _demo(args):
    from host_sim import demo

    return demo.main(interpreter=args.interpreter)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m host_sim", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    interp = dict(choices=runner.INTERPRETERS, default="cpython",
                  help="run the firmware on CPython (host board) or the MicroPython unix port "
                       "(.mpy files, -X heapsize=384k, see README Memory)")
    no_romfs = ("MicroPython: import the .mpy files from build/mpy instead of the ROMFS image "
                "(a board without ROMFS; the heap holds the bytecode: 256k)")
    r = sub.add_parser("run", help="start a charge point and read console commands")
    r.add_argument("--interpreter", **interp)
    r.add_argument("--no-romfs", action="store_true", help=no_romfs)
    r.add_argument("--evses", type=int, default=1)
    r.add_argument("--local-card", action="append", metavar="UID",
                   help="a UID for the local authorization list (repeatable)")
    r.add_argument("--reader", choices=runner.READERS, default="pn532")
    r.add_argument("--config", metavar="FILE", help="copy this config.json to the flash dir")
    r.add_argument("--reader-port", metavar="PORT",
                   help="bench mode: a real reader at this pyserial port/URL (cpython only)")
    r.add_argument("--flash", metavar="DIR", help="flash directory (default: a temporary one)")
    _add_broker_flags(r)
    r.set_defaults(func=_run)
    s = sub.add_parser("scenario", help="run a scenario file, exit non-zero on a failure")
    s.add_argument("file")
    s.add_argument("--interpreter", **interp)
    s.add_argument("--no-romfs", action="store_true", help=no_romfs)
    s.add_argument("-v", "--verbose", action="store_true", help="log each step to stderr")
    _add_broker_flags(s)
    s.set_defaults(func=_scenario)
    d = sub.add_parser("demo", help="the whole chain narrated: broker, Hubject simulator, OICP "
                                    "bridge, a charge point with two EVSEs")
    d.add_argument("--interpreter", **dict(interp, default="micropython"))
    d.set_defaults(func=_demo)
    from host_sim import board  # a virtual MicroPython board on a pty (raw REPL, mpremote)

    board.add_parser(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
