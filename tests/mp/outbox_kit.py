"""Shared pieces of the store/outbox tests (tests/mp/test_store.py, test_outbox_lazy.py,
test_outbox_policy.py): a temporary flash folder and an outbox whose power goes at the n-th flash
operation. Runs on both interpreters like the tests that import it."""

import os

from firmware.store import Outbox


def tmpdir(tag):
    """A fresh folder name under /tmp (not created)."""
    return "/tmp/mpevse_{}_{}".format(tag, "".join("{:02x}".format(b) for b in os.urandom(6)))


def rmtree(path):
    for name in os.listdir(path):
        try:
            os.remove(path + "/" + name)
        except OSError:  # a folder (the outbox's)
            rmtree(path + "/" + name)
    os.rmdir(path)


def with_dir(tag, fn):
    """fn(folder) with a fresh folder, removed afterwards whatever happened."""
    root = tmpdir(tag)
    try:
        fn(root)
    finally:
        rmtree(root)


def ids(ob):
    """The ids of an outbox's waiting messages, oldest first."""
    return [msg_id for msg_id, _ in ob.pending()]


class CutBox(Outbox):
    """An outbox whose flash operations fail from the `budget`-th on (the power went); with
    `torn`, the failing append writes half of its bytes first (POSIX can do that)."""

    budget = -1  # operations that still succeed; -1: all
    torn = False

    def _dies(self):
        if CutBox.budget == 0:
            return True
        if CutBox.budget > 0:
            CutBox.budget -= 1
        return False

    def _write(self, path, mode, data):
        if self._dies():
            if not isinstance(data, bytes):
                data = b"".join(data)
            if CutBox.torn and len(data) > 1:
                Outbox._write(self, path, mode, data[:len(data) // 2])
            raise OSError(5)
        Outbox._write(self, path, mode, data)

    def _rename(self, src, dst):
        if self._dies():
            raise OSError(5)
        Outbox._rename(self, src, dst)

    def _remove(self, path):
        if self._dies():
            raise OSError(5)
        Outbox._remove(self, path)
