"""The runner's progress poll spares the store: it runs at most once per ten times its own
last duration (a clock of the test's own stands in for time)."""

from __future__ import annotations

from lrstudy.execution.store_watch import Paced


def test_a_poll_waits_ten_times_its_own_duration_before_it_runs_again():
    now = [0.0]
    ran = []

    def poll():  # a search that takes 3 s of the clock
        ran.append(now[0])
        now[0] += 3.0

    paced = Paced(poll, factor=10.0, clock=lambda: now[0])
    paced()  # the first poll always runs
    for t in (5.0, 20.0, 29.9):  # within 30 s of the last start: not due
        now[0] = t
        paced()
    now[0] = 30.0
    paced()
    assert ran == [0.0, 30.0]


def test_a_quick_poll_runs_every_time_it_is_asked():
    now = [0.0]
    ran = []

    def poll():
        ran.append(now[0])
        now[0] += 0.01

    paced = Paced(poll, factor=10.0, clock=lambda: now[0])
    for t in (0.0, 2.0, 4.0, 6.0):  # the runner asks every 2 s
        now[0] = t
        paced()
    assert ran == [0.0, 2.0, 4.0, 6.0]
