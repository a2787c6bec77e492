"""simio client: line parsing/formatting, partial lines, garbage, and the real drivers on top."""

from hal.boards.simio import MAX_LINE, SimIO, SimLine, parse_line
from hal.contactor import Contactor
from hal.kinds import CONTACTOR, PILOT
from hal.pilot import Pilot, Proximity


class FakeStream:
    """What the board hands SimIO: read/write/any over scripted chunks."""

    def __init__(self, chunks=(), none_when_empty=True):
        self.chunks = list(chunks)
        self.written = b""
        self.none_when_empty = none_when_empty

    def feed(self, data):
        self.chunks.append(data)

    def any(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n):
        if not self.chunks:
            return None if self.none_when_empty else b""
        data = self.chunks.pop(0)
        if n < len(data):
            self.chunks.insert(0, data[n:])
            data = data[:n]
        return data

    def write(self, b):
        self.written += bytes(b)
        return len(b)


def test_parse_every_line_kind():
    table = (
        (b"cp 1 6000 -12000", ("cp", 1, 6000, -12000)),
        (b"cp 2 12000 12000", ("cp", 2, 12000, 12000)),
        (b"cp 1 -12000 -12000", ("cp", 1, -12000, -12000)),
        (b"cp 1 0 0", ("cp", 1, 0, 0)),
        (b"pp 1 220", ("pp", 1, 220, None)),
        (b"pp 2 0", ("pp", 2, 0, None)),
        (b"mirror 1 1", ("mirror", 1, 1, None)),
        (b"mirror 2 0", ("mirror", 2, 0, None)),
    )
    for line, want in table:
        assert parse_line(line, 2) == want, (line, parse_line(line, 2))


def test_parse_rejects_garbage():
    bad = (
        b"", b"cp", b"cp 1 6000", b"cp 1 6000 -12000 5", b"cp 1  6000 -12000", b"cp 1 6k -12000",
        b"cp 3 6000 -12000", b"cp 0 6000 -12000", b"cp -1 6000 -12000", b"cp 1 +6000 -12000",
        b"cp 1 1_000 0", b"cp 1 - 0", b"cp 1 99999 0", b"pp 1 -5", b"pp 1", b"pp 1 2 3",
        b"mirror 1 2", b"mirror 1", b"MIRROR 1 1", b"pwm 1 500", b"coil 1 1", b"hello",
        b"\xff\xfe", b" cp 1 0 0", b"cp 1 0 0 ",
    )
    for line in bad:
        try:
            parse_line(line, 2)
        except ValueError:
            continue
        raise AssertionError(line)


def test_u16_round_trip_is_exact_for_every_permille():
    s = FakeStream()
    sio = SimIO(s, evses=1, hello=False)
    pwm = SimLine(sio, 1, "pwm")
    for p in range(1001):
        pwm.duty_u16((p * 65535 + 500) // 1000)  # the pilot driver's rounding
        assert sio.duty[0] == p, p
        assert s.written.endswith(b"pwm 1 %d\n" % p), s.written[-20:]
    for bad in (-1, 65536):
        try:
            pwm.duty_u16(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_hello_then_partial_lines_across_reads():
    s = FakeStream()
    sio = SimIO(s, evses=2)
    assert s.written == b"hello\n"
    applied = 0
    for chunk in (b"cp 1 60", b"00 -12", b"000\nmir", b"ror 2 0\npp 1 2", b"20\n"):
        s.feed(chunk)
        applied += sio.pump()
    assert sio.cp[0] == (6000, -12000) and sio.mirror[1] == 0 and sio.pp[0] == 220
    assert applied == 3 and sio.garbage == 0
    s.feed(b"cp 2 9000 -12000\r\n")  # CRLF tolerated
    assert sio.pump() == 1 and sio.cp[1] == (9000, -12000)


def test_garbage_counted_and_ignored_never_raised():
    s = FakeStream(none_when_empty=False)
    sio = SimIO(s, evses=1, hello=False)
    assert s.written == b""
    s.feed(b"bogus\ncp 1 x y\n" + b"z" * (MAX_LINE + 10) + b"\nmirror 1 0\n\n")
    s.feed(b"cp 9 0 0\n\xff\x00\x01\ncp 1 3000 -12000\n")
    applied = 0
    while s.chunks:
        applied += sio.pump()
    assert sio.garbage == 5, sio.garbage
    assert applied == 2 and sio.mirror[0] == 0 and sio.cp[0] == (3000, -12000)
    assert sio.pump() == 0  # nothing waiting: b"" from a pyserial-like stream


def test_outputs_sent_once_per_change():
    s = FakeStream()
    sio = SimIO(s, evses=2, hello=False)
    coil, pwm = SimLine(sio, 2, "coil"), SimLine(sio, 1, "pwm")
    coil.value(0)
    coil.value(0)
    coil.value(1)
    assert coil.value() == 1
    pwm.duty_u16(65535)
    pwm.duty_u16((267 * 65535 + 500) // 1000)
    pwm.duty_u16((267 * 65535 + 500) // 1000)
    assert s.written == b"coil 2 0\ncoil 2 1\npwm 1 1000\npwm 1 267\n", s.written
    for bad in (0, 3):
        try:
            SimLine(sio, bad, "coil")
        except ValueError:
            continue
        raise AssertionError(bad)


def test_real_drivers_run_on_simio():
    s = FakeStream()
    sio = SimIO(s, evses=1)
    pilot = Pilot(SimLine(sio, 1, "pwm"), SimLine(sio, 1, "cp"), interval_ms=0, debounce=2)
    contactor = Contactor(SimLine(sio, 1, "coil"), SimLine(sio, 1, "mirror"), settle_ms=50,
                          debounce_ms=10)
    pp = Proximity(SimLine(sio, 1, "pp"))
    assert s.written == b"hello\npwm 1 1000\ncoil 1 0\n", s.written
    s.feed(b"cp 1 9000 9000\npp 1 220\nmirror 1 1\n")
    events = []
    for t in range(0, 100, 5):
        for ev in (pilot.poll(t), contactor.poll(t)):
            if ev is not None:
                events.append(ev)
    assert events == [(PILOT, ("B", None)), (CONTACTOR, ("open", None))], events
    assert pp.cable_amps() == 32
    pilot.set_duty(267)  # 16 A
    s.feed(b"cp 1 6000 -12000\n")  # the sim answers with the EV in C, diode healthy
    states = [pilot.poll(t) for t in range(100, 110)]
    assert (PILOT, ("C", True)) in states, states
    contactor.set(True, 110)
    s.feed(b"mirror 1 0\n")
    got = [contactor.poll(t) for t in range(110, 200, 5)]
    assert (CONTACTOR, ("closed", None)) in got, got
    assert s.written.endswith(b"pwm 1 267\ncoil 1 1\n"), s.written
    # diode short in state C: low plateau mirrors the high one
    s.feed(b"cp 1 6000 -6000\n")
    states = [pilot.poll(t) for t in range(200, 210)]
    assert (PILOT, ("C", False)) in states, states
    s.feed(b"pp 1 0\n")
    assert pp.cable_amps() == 0
