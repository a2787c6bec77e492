"""Fetch the third-party code the firmware runs with, pinned by hash, and unpack what it uses.

One dependency today: micropython-umqtt.simple 1.3.4, the MQTT 3.1.1 client under
`firmware/mqtt.py`. It is the only umqtt release on PyPI (hardware.md §7; micropython-lib's newer
1.8.0 is installed with mip, which the unix port and CPython have no use for), and its sdist has
no setup.py, so pip cannot install it. This script downloads exactly that file, refuses it unless
its sha256 is the pinned one, and extracts the single module the firmware imports into
`.deps/umqtt/simple.py` (git-ignored: the dependency's code is never committed). From there:

- `tools/build.py` compiles it into the image (`umqtt/simple.mpy` next to `firmware/` and `hal/`),
  so `import umqtt.simple` works on the unix port from ROMFS, as on a charger flashed with the
  image;
- on CPython, `firmware/mqtt.py` puts `.deps` on sys.path (and the u-module names umqtt imports);
- for the ESP32, the deploy step (a later issue) copies `umqtt/simple.mpy` with the firmware
  (it is inside the ROMFS image already; a stock build without ROMFS needs the file copied).

The archive is kept in a cache folder (`.deps/cache/` unless `--cache DIR` or MPEVSE_DEPS_CACHE
names another one, e.g. one prepared for an offline machine); a cached archive is verified like a
download. Running it again when the extracted module is already the pinned one does nothing.

    python -m tools.deps [--cache DIR] [--dest DIR]
"""

import hashlib
import io
import os
import sys
import tarfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(ROOT, ".deps")
ARCHIVE = "micropython-umqtt.simple-1.3.4.tar.gz"
URL = ("https://files.pythonhosted.org/packages/bd/cf/"
       "697e3418b2f44222b3e848078b1e33ee76aedca9b6c2430ca1b1aec1ce1d/" + ARCHIVE)
ARCHIVE_SHA256 = "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"
MEMBER = "micropython-umqtt.simple-1.3.4/umqtt/simple.py"
MODULE = os.path.join("umqtt", "simple.py")  # where it lands under DEST
MODULE_SHA256 = "8555d2f654deb8eb0d724f79b0811a78cc94029d070f3d96bbd74288653d63a5"
DOWNLOAD_TIMEOUT_S = 60


class DepsError(Exception):
    """The dependency could not be fetched or did not match its pinned hash (the message says
    which file and what was expected)."""


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write_atomic(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def module_path(dest=DEST):
    """Where the extracted `umqtt/simple.py` lives."""
    return os.path.join(dest, MODULE)


def is_current(dest=DEST):
    """True if the extracted module is there and is exactly the pinned one."""
    path = module_path(dest)
    return os.path.exists(path) and _sha256(_read(path)) == MODULE_SHA256


def cache_dirs(cache=None, dest=DEST):
    """Folders searched for the archive, in order: `cache`, $MPEVSE_DEPS_CACHE, dest/cache."""
    dirs = [cache, os.environ.get("MPEVSE_DEPS_CACHE"), os.path.join(dest, "cache")]
    return [d for d in dict.fromkeys(dirs) if d]


def archive(cache=None, dest=DEST, url=URL):
    """The verified archive bytes: from the first cache that holds a good copy, else downloaded
    (then kept in `dest/cache`). A cached copy with the wrong hash is reported, never used."""
    for folder in cache_dirs(cache, dest):
        path = os.path.join(folder, ARCHIVE)
        if os.path.exists(path):
            data = _read(path)
            if _sha256(data) == ARCHIVE_SHA256:
                return data
            print("deps: {} has sha256 {}, expected {}: ignored".format(
                path, _sha256(data), ARCHIVE_SHA256), file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            data = resp.read()
    except OSError as e:  # URLError, HTTPError and time-outs are OSErrors
        raise DepsError("cannot download {}: {} (put {} into a folder and pass --cache DIR)"
                        .format(url, e, ARCHIVE)) from None
    got = _sha256(data)
    if got != ARCHIVE_SHA256:
        raise DepsError("downloaded {} has sha256 {}, expected {}: refusing it".format(
            url, got, ARCHIVE_SHA256))
    _write_atomic(os.path.join(dest, "cache", ARCHIVE), data)
    return data


def extract(data, dest=DEST):
    """Write the one module the firmware uses out of the archive bytes (no other member is
    touched, so a crafted path inside the archive cannot write anywhere); -> its path."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            member = tar.getmember(MEMBER)
        except KeyError:
            raise DepsError("{} has no {}".format(ARCHIVE, MEMBER)) from None
        f = tar.extractfile(member) if member.isfile() else None
        if f is None:
            raise DepsError("{} in {} is not a regular file".format(MEMBER, ARCHIVE))
        text = f.read()
    if _sha256(text) != MODULE_SHA256:
        raise DepsError("{} in {} has sha256 {}, expected {}".format(
            MEMBER, ARCHIVE, _sha256(text), MODULE_SHA256))
    path = module_path(dest)
    _write_atomic(path, text)
    return path


def ensure(cache=None, dest=DEST, url=URL):
    """The extracted module's path; fetches and extracts only when it is missing or differs."""
    if not is_current(dest):
        extract(archive(cache, dest, url), dest)
    return module_path(dest)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    opts = {"--cache": None, "--dest": DEST}
    if len(argv) % 2 or any(a not in opts for a in argv[::2]):
        print("usage: python -m tools.deps [--cache DIR] [--dest DIR]", file=sys.stderr)
        return 2
    opts.update(zip(argv[::2], argv[1::2], strict=True))
    try:
        fresh = not is_current(opts["--dest"])
        path = ensure(opts["--cache"], opts["--dest"])
    except DepsError as e:
        print("deps:", e, file=sys.stderr)
        return 1
    print("deps: umqtt.simple 1.3.4 {} {}".format("extracted to" if fresh else "up to date in",
                                                   path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
