"""The single-threaded hub: services every device's pty and advances device time.

One `selectors` loop, so the runner can drive a whole charge point (and a console on stdin via
`add_reader`) without threads. Each loop reads what the firmware wrote, feeds it to the device
with the current time, then collects what every device has to send at that time. The select
time-out is cut to the earliest `next_event` of any device, so timed answers (PN532 responses,
Modbus turnaround, contactor travel, RDM6300 repeats) leave on time.

The device protocol (what `attach` expects), all times in seconds of the hub's clock:
    feed(data, now)      bytes the firmware wrote
    pending(now)         bytes to send now (b"" if none)
    next_event(now)      when the device next has something to send, or None
    status(now)          a JSON-able dict; `Hub.status()` calls it with the hub's time, so a
                         device whose status does not depend on time still takes `now`
"""

import selectors
import time

from host_sim.devices.pty import PtyPort

BACKLOG_POLL_S = 0.005  # retry period while a pty's buffer is full


class Hub:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._sel = selectors.DefaultSelector()
        self._entries = []  # (name, device, port)
        self._closed = False

    def attach(self, name, device, **port_options):
        """Give `device` its own pty; returns the port (its `.path` is for the firmware)."""
        if any(n == name for n, _, _ in self._entries):
            raise ValueError("device name %r already attached" % name)
        port = PtyPort(**port_options)
        self._entries.append((name, device, port))
        self._sel.register(port.master, selectors.EVENT_READ, (device, port))
        return port

    def add_reader(self, fileobj, callback):
        """Call `callback(now)` whenever `fileobj` (e.g. stdin for a console) is readable."""
        self._sel.register(fileobj, selectors.EVENT_READ, callback)

    def device(self, name):
        for n, dev, _ in self._entries:
            if n == name:
                return dev
        raise KeyError(name)

    def port(self, name):
        for n, _, port in self._entries:
            if n == name:
                return port
        raise KeyError(name)

    def run_once(self, timeout_s=0.05):
        """Wait at most `timeout_s` (less if a device is due), then service everything once."""
        now = self.clock()
        wake = now + max(0.0, timeout_s)
        for _, dev, port in self._entries:
            due = dev.next_event(now)
            if due is not None and due < wake:
                wake = due
            if port.backlog and now + BACKLOG_POLL_S < wake:
                wake = now + BACKLOG_POLL_S
        events = self._sel.select(max(0.0, wake - now))
        now = self.clock()
        for key, _ in events:
            if callable(key.data):
                key.data(now)
                continue
            dev, port = key.data
            data = port.read()
            if data:
                dev.feed(data, now)
        for _, dev, port in self._entries:
            port.write(dev.pending(now))

    def run_for(self, seconds):
        end = self.clock() + seconds
        while True:
            left = end - self.clock()
            if left <= 0:
                return
            self.run_once(min(left, 0.05))

    def run_until(self, predicate, timeout_s):
        """Run until `predicate()` is true; returns False if `timeout_s` passed first."""
        end = self.clock() + timeout_s
        while not predicate():
            left = end - self.clock()
            if left <= 0:
                return False
            self.run_once(min(left, 0.05))
        return True

    def status(self):
        now = self.clock()
        return {name: {"device": dev.status(now), "port": port.status()}
                for name, dev, port in self._entries}

    def close(self):
        if self._closed:
            return
        self._closed = True
        for _, _, port in self._entries:
            self._sel.unregister(port.master)
            port.close()
        self._sel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
