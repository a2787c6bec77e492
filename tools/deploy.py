"""Flash a charger: build, check the board, write, verify by hash, switch over, reset.

    python -m tools.deploy --port PORT [--config FILE] [--authlist FILE] [--ca FILE]
                           [--romfs | --files] [--dry-run] [--no-reset] [--build-dir DIR]

PORT is the board's serial port (any pyserial URL, a virtual board's /dev/pts/N); mpremote's
SerialTransport is the link (mpremote is the chosen dependency; nothing of it is patched).

Order, so that nothing is written unless everything can be (exit status 2, board untouched):
1. Local: build the image (tools.build), validate config.json with the firmware's own
   `firmware.config`, check the local list, check that the CA file is PEM certificates.
2. The board: a MicroPython raw REPL (else "not a MicroPython board"), its release >= MIN_VERSION
   and its .mpy version = the build's, its free flash (os.statvfs) >= what the plan writes, and
   a ROMFS partition that fits the image (`--romfs` requires one; by default it is used when
   present, and when absent the tool says so and deploys .mpy files).
3. Write. The code goes into one of two slot folders, /mpevse/a and /mpevse/b: never into the
   one the board boots. A file already right in the target slot is kept, one right in the
   running slot is copied on the board (no serial traffic), only the rest crosses the wire;
   so a redeploy sends only changed modules. config.json, the local list and the CA file are
   staged as `<name>.new`, and so is main.py.
4. Verify every written file by sha256 on the board (the staged ones included).
5. Switch over in one REPL command: the staged data files are renamed over the old ones, then
   main.py (the boot entry that puts the slot first on sys.path) and /data/version.json (project
   version, git describe, image hash, time). littlefs renames are atomic, so a cut before this
   command leaves the previous firmware, config and list exactly as they were; the whole
   switch-over is one command of a few milliseconds.
6. With a ROMFS partition: the partition is then written with the image, header block last (an
   erased partition has no ROMFS header, so a cut meanwhile leaves /rom unmounted and the
   .mpy slot just switched to still boots), verified by hash, and main.py rewritten to put /rom
   first. 7. Reset (`machine.reset()`).

A failure part-way says what was written and what was not, and that the board still boots the
previous firmware. `--dry-run` prints the plan (it reads the board, writes nothing). A redeploy
with nothing changed writes nothing and does not reset.
"""

import argparse
import ast
import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import time

from tools import build

ROOT = build.ROOT
MIN_VERSION = (1, 24, 0)  # ../shared/ARCHITECTURE.md "Targets": ESP32, MicroPython >= 1.24
SLOTS = ("a", "b")
SLOT_ROOT = "/mpevse"
DATA = "/data"  # firmware/main.py runs run("esp32", "/data")
BLOCK = 4096  # littlefs block on the ESP32 (hardware.md 6.5): what a file costs, rounded up
MARGIN_BLOCKS = 8  # directories, littlefs metadata, the staged copies' rename
CHUNK = 3072  # bytes of a file per REPL command (4 KB of base64 on the wire)
MAIN_TAG = "# mpevse-deploy slot="
ROM_TAG = " rom="


class DeployError(Exception):
    """The deploy cannot go on; the message says why and what state the board is in."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


class BadInput(DeployError):
    """Refused before anything was written (exit status 2)."""

    def __init__(self, message):
        super().__init__(message, 2)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# -- local checks ------------------------------------------------------------------------------
def check_config(path):
    """config.json text validated by firmware.config (the firmware's own rules) -> (bytes, cfg)."""
    from firmware import config

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BadInput("cannot read --config {}: {}".format(path, e)) from None
    try:
        cfg = config.load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput("{}: config.json: not UTF-8 text".format(path)) from None
    except ValueError as e:  # config.ConfigError names the field and the rule
        raise BadInput("{}: {} (nothing was written)".format(path, e)) from None
    return raw, cfg


def check_authlist(path):
    """The local list file: {"version": int >= 0, "uids": [UID, ...]} -> bytes."""
    from firmware.ids import IdError, normalize_uid

    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = json.loads(raw)
    except (OSError, ValueError) as e:
        raise BadInput("--authlist {}: {}".format(path, e)) from None
    if not isinstance(data, dict) or not isinstance(data.get("uids"), list) \
            or not isinstance(data.get("version"), int) or data["version"] < 0:
        raise BadInput("--authlist {}: must be {{\"version\": N >= 0, \"uids\": [...]}}".format(
            path))
    for uid in data["uids"]:
        try:
            normalize_uid(uid)
        except (IdError, TypeError, ValueError) as e:
            raise BadInput("--authlist {}: uid {!r}: {}".format(path, uid, e)) from None
    return raw


def check_ca(path):
    """A CA file of PEM certificates that OpenSSL can load -> bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise BadInput("cannot read --ca {}: {}".format(path, e)) from None
    if b"-----BEGIN CERTIFICATE-----" not in raw:
        raise BadInput("--ca {}: not a PEM certificate file (no -----BEGIN CERTIFICATE-----)"
                       .format(path))
    try:
        ssl.create_default_context(cadata=raw.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as e:
        raise BadInput("--ca {}: not a usable PEM certificate: {}".format(path, e)) from None
    return raw


def code_tree(out_dir):
    """{board path relative to a slot: bytes} of the built .mpy packages and dependencies."""
    files = {}
    for top in build.PACKAGES + build.DEPENDENCIES:
        base = os.path.join(out_dir, top)
        for folder, dirs, names in os.walk(base):
            dirs.sort()
            for name in sorted(names):
                if name.endswith(".mpy"):
                    full = os.path.join(folder, name)
                    with open(full, "rb") as f:
                        files[os.path.relpath(full, out_dir).replace(os.sep, "/")] = f.read()
    return files


def tree_hash(files):
    """One sha256 over the sorted (path, content hash) pairs: names the code a slot holds."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update("{} {}\n".format(path, sha256(files[path])).encode())
    return h.hexdigest()


def git_describe():
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def project_version():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["version"]


def main_py(slot, rom):
    """The boot entry: the slot's folder (and /rom before it in ROMFS mode) first on sys.path,
    then the firmware's ESP32 entry (firmware/main.py, compiled in the slot and the image)."""
    path = ["/rom"] if rom else []
    path.append("{}/{}".format(SLOT_ROOT, slot))
    return ("{tag}{slot}{rom_tag}{rom}\n"
            "# The board's boot entry, written by tools.deploy; the previous one is kept until\n"
            "# a new firmware is complete and verified. Do not edit: the next deploy rewrites it.\n"
            "import sys\n\n"
            "sys.path[:0] = {path!r}\n"
            "import firmware.main  # noqa: E402,F401 (the ESP32 entry: runs the charge point)\n"
            ).format(tag=MAIN_TAG, slot=slot, rom_tag=ROM_TAG, rom=int(bool(rom)),
                     path=path).encode()


# -- the board ---------------------------------------------------------------------------------
PROBE = """
import os, sys, hashlib, binascii
def _mh(p):
    h = hashlib.sha256()
    b = bytearray(1024)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
def _mwalk(d, out):
    try:
        ents = list(os.ilistdir(d))
    except OSError:
        return out
    for e in ents:
        p = d + '/' + e[0]
        if e[1] == 0x4000:
            _mwalk(p, out)
        else:
            out[p] = _mh(p)
    return out
def _mmk(p):
    q = ''
    for part in p.split('/')[1:-1]:
        q += '/' + part
        try:
            os.mkdir(q)
        except OSError:
            pass
def _mcp(s, d):
    _mmk(d)
    b = bytearray(1024)
    m = memoryview(b)
    with open(s, 'rb') as fi:
        with open(d, 'wb') as fo:
            while True:
                n = fi.readinto(b)
                if not n:
                    break
                fo.write(m[:n])
def _mfile(p):
    try:
        return _mh(p)
    except OSError:
        return None
def _mread(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
_i = sys.implementation
_s = os.statvfs('/')
_r = None
try:
    import vfs
    if hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0:
        _d = vfs.rom_ioctl(2, 0)
        _r = len(_d) if not isinstance(_d, int) else None
except Exception:
    _r = None
print(repr({'version': tuple(_i.version[:3]), 'mpy': _i._mpy & 0xff,
            'block': _s[0], 'free': _s[0] * _s[3], 'total': _s[0] * _s[2], 'romfs': _r,
            'main': _mread('/main.py'), 'slots': _mwalk('%s', {}), 'data': _mwalk('%s', {})}))
"""


class Board:
    """The raw-REPL link (mpremote's SerialTransport) with the few commands the deploy needs."""

    def __init__(self, port, timeout_s=10):
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport

        self.port = port
        try:
            self.t = SerialTransport(port, baudrate=115200, timeout=timeout_s)
        except (TransportError, OSError) as e:
            raise BadInput("cannot open {}: {}".format(port, e)) from None
        try:
            self.t.enter_raw_repl(soft_reset=True, timeout_overall=timeout_s)
        except (TransportError, OSError) as e:
            self.close()
            raise BadInput("{} is not a MicroPython board: no raw REPL answer within {} s ({})"
                           .format(port, timeout_s, e)) from None
        self.sent = 0  # payload bytes written over the link

    def close(self):
        try:
            self.t.close()
        except OSError as e:
            print("deploy: closing {}: {}".format(self.port, e), file=sys.stderr)

    def exec(self, src):
        return self.t.exec(src)

    def eval(self, expr):
        return ast.literal_eval(self.exec("print(repr({}))".format(expr)).decode().strip())

    def probe(self):
        out = self.exec(PROBE % (SLOT_ROOT, DATA)).decode()
        return ast.literal_eval(out.strip().splitlines()[-1])

    def write_file(self, path, data):
        """`data` to `path` on the board, CHUNK bytes (base64) per command."""
        self.exec("from binascii import a2b_base64\n_mmk({0!r})\n_mf = open({0!r}, 'wb')\n"
                  "_mw = _mf.write".format(path))
        for i in range(0, len(data), CHUNK):
            b64 = base64.b64encode(data[i:i + CHUNK]).decode()
            self.exec("_mw(a2b_base64('{}'))".format(b64))
            self.sent += len(data[i:i + CHUNK])
        self.exec("_mf.close()")

    def copy(self, src, dst):
        self.exec("_mcp({!r}, {!r})".format(src, dst))

    def hashes(self, paths):
        return self.eval("{{p: _mfile(p) for p in {!r}}}".format(list(paths)))

    def remove(self, paths):
        self.exec("for _p in {!r}:\n    os.remove(_p)".format(list(paths)))


def _blocks(n):
    return max(1, (n + BLOCK - 1) // BLOCK) * BLOCK


class Plan:
    """What the deploy will do to this board (printed by --dry-run)."""

    def __init__(self):
        self.mode = "files"
        self.slot = None
        self.active = None
        self.write = {}  # board path -> bytes, over the wire
        self.copy = {}  # board path -> board path it is copied from
        self.expect = {}  # board path -> sha256 of what a copied file must hold
        self.keep = []  # board paths already right
        self.remove = []  # stale files in the target slot
        self.stage = {}  # final board path -> bytes, written as <path>.new then renamed
        self.rom = None  # the image, when the partition must be written
        self.needed = 0  # bytes of flash the plan allocates (blocks)
        self.notes = []

    def changes(self):
        return bool(self.write or self.copy or self.remove or self.stage or self.rom)

    def lines(self):
        out = ["mode: {} ({})".format(self.mode, "; ".join(self.notes) or "as asked")]
        out.append("slot: {} (the board boots {})".format(
            self.slot, self.active or "no mpevse firmware"))
        for p in sorted(self.write):
            out.append("write {} ({} B)".format(p, len(self.write[p])))
        for p in sorted(self.copy):
            out.append("copy  {} <- {} (on the board)".format(p, self.copy[p]))
        for p in sorted(self.remove):
            out.append("remove {} (stale, not running)".format(p))
        for p in sorted(self.stage):
            out.append("stage {}.new ({} B), then rename over {}".format(
                p, len(self.stage[p]), p))
        if self.rom is not None:
            out.append("romfs partition 0: write the image ({} B), header last".format(
                len(self.rom)))
        out.append("keep  {} file(s) already right".format(len(self.keep)))
        out.append("flash needed: {} B".format(self.needed))
        return out


def make_plan(info, files, staged, image, want):
    """The plan for this board. `info` from Board.probe, `files` the code tree, `staged` the
    data files and main.py (path -> bytes, main.py built per slot), `want` 'romfs'|'files'|None."""
    plan = Plan()
    slots = info["slots"]
    main = info["main"] or ""
    if main.startswith(MAIN_TAG):
        head = main[len(MAIN_TAG):].split("\n", 1)[0]
        plan.active = head.split(ROM_TAG)[0].strip()
        if plan.active not in SLOTS:
            plan.active = None
    rom_ok = info["romfs"] is not None and info["romfs"] >= len(image)
    if want == "romfs" and not rom_ok:
        raise BadInput("--romfs: the board has no ROMFS partition{} (MicroPython built with "
                       "MICROPY_VFS_ROM and a romfs partition; README \"Deploy to a charger\")"
                       .format("" if info["romfs"] is None else
                               " big enough: {} B for a {} B image".format(info["romfs"],
                                                                          len(image))))
    if want == "files":
        plan.notes.append("--files")
    elif rom_ok:
        plan.mode = "romfs"
        plan.notes.append("the board has a {} B ROMFS partition".format(info["romfs"]))
    else:
        plan.notes.append("no ROMFS partition on the board: deploying .mpy files (the bytecode "
                          "is loaded into the heap, README \"Memory\")")

    def slot_state(s):
        prefix = "{}/{}/".format(SLOT_ROOT, s)
        return {p[len(prefix):]: h for p, h in slots.items() if p.startswith(prefix)}

    want_hashes = {p: sha256(d) for p, d in files.items()}
    if plan.active and slot_state(plan.active) == want_hashes:
        plan.slot = plan.active  # the running slot already holds this code
    else:
        plan.slot = "b" if plan.active == "a" else "a"
    target, running = slot_state(plan.slot), slot_state(plan.active) if plan.active else {}
    for rel, data in files.items():
        dst = "{}/{}/{}".format(SLOT_ROOT, plan.slot, rel)
        if target.get(rel) == want_hashes[rel]:
            plan.keep.append(dst)
        elif running.get(rel) == want_hashes[rel]:
            plan.copy[dst] = "{}/{}/{}".format(SLOT_ROOT, plan.active, rel)
            plan.expect[dst] = want_hashes[rel]
            plan.needed += _blocks(len(data))
        else:
            plan.write[dst] = data
            plan.needed += _blocks(len(data))
    plan.remove = ["{}/{}/{}".format(SLOT_ROOT, plan.slot, rel) for rel in sorted(target)
                   if rel not in files]
    rom_main = plan.mode == "romfs"
    if rom_main:
        # the partition holds this image already (hash of its first len(image) bytes)
        if info.get("rom_hash") != sha256(image):
            plan.rom = image
    staged = dict(staged)
    staged["/main.py"] = main_py(plan.slot, rom_main)
    for path, data in staged.items():
        have = info["data"].get(path) if path.startswith(DATA + "/") else (
            sha256(main.encode()) if path == "/main.py" and info["main"] is not None else None)
        if have == sha256(data):
            plan.keep.append(path)
        else:
            plan.stage[path] = data
            plan.needed += _blocks(len(data))
    if plan.changes():
        plan.needed += _blocks(512)  # version.json
    plan.needed += MARGIN_BLOCKS * BLOCK if plan.changes() else 0
    return plan


def check_board(info, image_mpy):
    """Release, .mpy version and free flash (the latter in deploy(), once the plan is known)."""
    v = tuple(info["version"])
    if v < MIN_VERSION:
        raise BadInput("the board runs MicroPython {}; this firmware needs {} or later".format(
            ".".join(map(str, v)), ".".join(map(str, MIN_VERSION))))
    if info["mpy"] != image_mpy:
        raise BadInput("the board loads .mpy version {}, the build is version {} (use mpy-cross "
                       "of the board's release)".format(info["mpy"], image_mpy))


def _rom_hash(board, n):
    return board.eval("binascii.hexlify(hashlib.sha256(bytes(memoryview(vfs.rom_ioctl(2, 0))"
                      "[:{}])).digest()).decode()".format(n))


def deploy(port, config=None, authlist=None, ca=None, mode=None, dry_run=False, reset=True,
           build_dir=None, log=print, after_write=None, timeout_s=10):
    """Deploy to the board at `port`; -> a report dict (figures). `mode`: 'romfs', 'files' or
    None (ROMFS when the board has a partition). `after_write(path)` is called after each file
    written over the link (tests cut the link there). Raises DeployError / BadInput."""
    t0 = time.monotonic()
    out = os.path.abspath(build_dir or build.DEFAULT_OUT)
    # 1. local checks
    staged = {}
    cfg = None
    if config:
        raw, cfg = check_config(config)
        staged[DATA + "/config.json"] = raw
    if authlist:
        name = cfg["local_list_file"] if cfg else "authlist.json"
        staged["{}/{}".format(DATA, name)] = check_authlist(authlist)
    ca_dst = (cfg or {}).get("uplink", {}).get("ca_file")
    if ca:
        ca_raw = check_ca(ca)
        if not ca_dst:
            raise BadInput("--ca given, but config.json has no uplink.ca_file to say where it "
                           "goes (e.g. \"{}/ca.pem\")".format(DATA))
        if not ca_dst.startswith("/"):
            raise BadInput("config.json uplink.ca_file {!r}: the board needs an absolute path "
                           "(e.g. \"{}/ca.pem\")".format(ca_dst, DATA))
        staged[ca_dst] = ca_raw
    try:
        build.build(out)
    except build.BuildError as e:
        raise DeployError("build: {}".format(e)) from None
    files = code_tree(out)
    with open(os.path.join(out, build.IMAGE), "rb") as f:
        image = f.read()
    image_mpy = files["firmware/app.mpy"][1]
    t_build = time.monotonic()
    # 2. the board
    board = Board(port, timeout_s)
    try:
        info = board.probe()
        check_board(info, image_mpy)
        if info["romfs"] is not None and mode != "files":
            info["rom_hash"] = _rom_hash(board, len(image)) if info["romfs"] >= len(image) \
                else None
        if ca and not ca_raw:
            raise BadInput("--ca is empty")
        if cfg and ca_dst and not ca and ca_dst not in info["data"] and ca_dst not in staged:
            raise BadInput("config.json uplink.ca_file is {}, which the board does not have: "
                           "give --ca FILE".format(ca_dst))
        plan = make_plan(info, files, staged, image, mode)
        if plan.needed > info["free"]:
            raise BadInput("too little flash: the deploy needs {} KB, the board has {} KB free "
                           "of {} KB".format(plan.needed // 1024, info["free"] // 1024,
                                             info["total"] // 1024))
        for line in plan.lines():
            log("deploy: " + line)
        report = {"mode": plan.mode, "slot": plan.slot, "written": len(plan.write),
                  "copied": len(plan.copy), "kept": len(plan.keep), "staged": len(plan.stage),
                  "bytes_sent": 0, "bytes_flash": 0, "build_s": round(t_build - t0, 2),
                  "image_bytes": len(image), "code_bytes": sum(map(len, files.values())),
                  "flash_needed": plan.needed, "changed": plan.changes()}
        if dry_run:
            log("deploy: --dry-run: nothing written")
            return report
        if not plan.changes():
            log("deploy: the board already runs this firmware and data: nothing written")
            report["seconds"] = round(time.monotonic() - t0, 2)
            return report
        version = {"project": project_version(), "git": git_describe(),
                   "image_sha256": sha256(image), "code_sha256": tree_hash(files),
                   "mode": plan.mode, "slot": plan.slot,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _write(board, plan, version, after_write, log)
        if reset:
            board.t.exec_raw_no_follow("import time, machine\ntime.sleep_ms(100)\n"
                                       "machine.reset()")
            log("deploy: reset")
        report.update(bytes_sent=board.sent, seconds=round(time.monotonic() - t0, 2),
                      bytes_flash=sum(map(len, plan.write.values()))
                      + sum(len(files[p.split("/", 3)[3]]) for p in plan.copy)
                      + sum(map(len, plan.stage.values())) + len(plan.rom or b""),
                      version=version)
        log("deploy: done in {} s: {} file(s) written ({} B over the link), {} copied on the "
            "board, {} kept; {} {}".format(report["seconds"], report["written"],
                                            report["bytes_sent"], report["copied"],
                                            report["kept"], plan.mode, version["code_sha256"][:12]))
        return report
    finally:
        board.close()


def _write(board, plan, version, after_write, log):
    """Steps 3-6 of the module doc; a lost link or a failed check says what was done."""
    from mpremote.transport import TransportError

    done = []
    switched = False
    prev = "the previous firmware ({})".format(
        "slot " + plan.active if plan.active else "whatever it had")
    try:
        for p in plan.remove:
            board.remove([p])
            done.append("removed " + p)
        for dst, src in sorted(plan.copy.items()):
            board.copy(src, dst)
            done.append("copied " + dst)
        for dst in sorted(plan.write):
            board.write_file(dst, plan.write[dst])
            done.append("wrote " + dst)
            if after_write:
                after_write(dst)
        for dst in sorted(plan.stage):
            board.write_file(dst + ".new", plan.stage[dst])
            done.append("staged {}.new".format(dst))
            if after_write:
                after_write(dst + ".new")
        # 4. verify everything the slot must hold and everything staged
        want = {p: sha256(d) for p, d in plan.write.items()}
        want.update(plan.expect)
        want.update((p + ".new", sha256(d)) for p, d in plan.stage.items())
        got = board.hashes(sorted(want))
        bad = [p for p in sorted(want) if got.get(p) != want[p]]
        if bad:
            raise DeployError("verification failed on the board for {}: nothing was switched, "
                              "the board still boots {}".format(", ".join(bad), prev))
        # 5. switch over: data files, then main.py, then the version record
        vjson = json.dumps(version, sort_keys=True).encode()
        board.write_file(DATA + "/version.json.new", vjson)
        order = [p for p in sorted(plan.stage) if p != "/main.py"]
        order += [p for p in ("/main.py",) if p in plan.stage] + [DATA + "/version.json"]
        board.exec("for _p in {!r}:\n    os.rename(_p + '.new', _p)".format(order))
        switched = True
        done.append("switched over: " + ", ".join(order))
        if plan.rom is not None:
            _write_rom(board, plan, log)
            done.append("wrote the ROMFS partition")
    except (TransportError, OSError, ValueError, SyntaxError) as e:
        everything = (["copy " + p for p in sorted(plan.copy)]
                      + ["write " + p for p in sorted(plan.write)]
                      + ["stage {}.new".format(p) for p in sorted(plan.stage)]
                      + ["switch over"])
        left = [w for w in everything if w.split(" ", 1)[1] not in
                {d.split(" ", 1)[1] for d in done}]
        state = ("the new firmware in slot {} is switched on: {}".format(
            plan.slot, "the ROMFS partition was not finished, /rom stays unused" if plan.rom
            else "only the reset is missing") if switched else
            "nothing was switched: the board still boots {}".format(prev))
        raise DeployError("the link failed part-way ({}: {}). {}.\n  written: {}\n  not "
                          "written: {}".format(type(e).__name__, str(e).strip() or "-", state,
                                               _summary(done), _summary(left))) from None


def _summary(items):
    """'wrote a; wrote b; staged c' -> 'wrote 2 (a, b); staged 1 (c)': every path, grouped."""
    groups = {}
    for item in items:
        if item.startswith("switch"):  # the switch-over command: no paths of its own
            groups[item] = None
            continue
        verb, _, what = item.partition(" ")
        groups.setdefault(verb, []).append(what)
    return "; ".join(verb if w is None else "{} {} ({})".format(verb, len(w), ", ".join(w))
                     for verb, w in groups.items()) or "nothing"


def _write_rom(board, plan, log):
    """The image into ROMFS partition 0: erase, blocks 1.. then block 0 (the header), finish,
    verify, then main.py with /rom first (module doc, step 6)."""
    image = plan.rom
    size = (len(image) + BLOCK - 1) // BLOCK * BLOCK
    board.exec("import vfs\ntry:\n    vfs.umount('/rom')\nexcept OSError:\n    pass\n"
               "vfs.rom_ioctl(3, 0, {})".format(size))
    padded = image + b"\xff" * (size - len(image))
    for off in list(range(BLOCK, size, BLOCK)) + [0]:
        for i in range(off, off + BLOCK, CHUNK if CHUNK < BLOCK else BLOCK):
            piece = padded[i:min(off + BLOCK, i + CHUNK)]
            board.exec("vfs.rom_ioctl(4, 0, {}, a2b_base64('{}'))".format(
                i, base64.b64encode(piece).decode()))
            board.sent += len(piece)
    board.exec("vfs.rom_ioctl(5, 0)")
    if _rom_hash(board, len(image)) != sha256(image):
        raise DeployError("the ROMFS partition does not verify: main.py still boots the .mpy "
                          "slot {} (the new firmware)".format(plan.slot))
    board.write_file("/main.py.new", main_py(plan.slot, True))
    board.exec("os.rename('/main.py.new', '/main.py')")
    log("deploy: ROMFS partition written and verified ({} B); main.py boots /rom".format(
        len(image)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.split("\n")[0])
    p.add_argument("--port", required=True, help="the board's serial port (pyserial URL)")
    p.add_argument("--config", metavar="FILE", help="config.json for /data (firmware.config)")
    p.add_argument("--authlist", metavar="FILE", help="the local authorization list")
    p.add_argument("--ca", metavar="FILE", help="the broker's CA (PEM) for uplink.ca_file")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--romfs", dest="mode", action="store_const", const="romfs",
                   help="require a ROMFS partition and run the code from it")
    m.add_argument("--files", dest="mode", action="store_const", const="files",
                   help=".mpy files even if the board has a ROMFS partition")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    p.add_argument("--build-dir", metavar="DIR", help="build output (default build/mpy)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the board's raw REPL (default 10)")
    args = p.parse_args(argv)
    try:
        deploy(args.port, args.config, args.authlist, args.ca, args.mode, args.dry_run,
               not args.no_reset, args.build_dir, timeout_s=args.timeout)
    except DeployError as e:
        print("deploy: {}".format(e), file=sys.stderr)
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
