"""Shared pieces of the store/outbox tests (tests/mp/test_store.py, test_outbox_lazy.py,
test_outbox_policy.py): a temporary flash folder and an outbox whose power goes at the n-th flash
operation. Runs on both interpreters like the tests that import it."""

import os

from firmware.store import Outbox, Store


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


def cut_everywhere(tag, prepare, op, check):
    """For a clean cut and a torn one, and n = 0, 1, ...: a fresh folder, prepare(outbox) with
    every flash operation succeeding, then op(outbox) with the power going at its n-th flash
    operation, until op completes; check(root, n, torn) judges what the next boot finds in the
    folder. -> how many cuts happened (segment=3 keeps the outbox's files small)."""
    cuts = 0
    for torn in (False, True):
        n = 0
        while True:
            root = tmpdir(tag)
            try:
                CutBox.budget = -1
                ob = CutBox(Store(root), segment=3)
                prepare(ob)
                CutBox.budget = n
                CutBox.torn = torn
                try:
                    op(ob)
                    cut = False
                except OSError:
                    cut = True
                CutBox.budget = -1
                check(root, n, torn)
            finally:
                CutBox.budget = -1
                rmtree(root)
            if not cut:
                break
            cuts += 1
            n += 1
    return cuts
