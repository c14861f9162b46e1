"""pipeline.dispatch.service.MemberMark: a worker restarted within its session joins at once."""

from __future__ import annotations

from pathlib import Path

from pipeline.dispatch.service import MemberMark


def test_a_restart_within_the_session_is_still_the_member(tmp_path: Path) -> None:
    now = [1000.0]
    mark = MemberMark(str(tmp_path / "worker"), session_timeout_s=10.0, clock=lambda: now[0])
    assert not mark.held()  # a new worker: never a member
    mark.touch()  # the data dir is made if missing
    now[0] += 9.5  # killed, restarted: the broker still holds the membership
    assert MemberMark(str(tmp_path / "worker"), 10.0, clock=lambda: now[0]).held()
    now[0] += 1.0  # 10.5 s since the last tick: the session is over, its partitions moved
    assert not MemberMark(str(tmp_path / "worker"), 10.0, clock=lambda: now[0]).held()


def test_a_mark_from_the_future_is_not_trusted(tmp_path: Path) -> None:
    now = [1000.0]
    mark = MemberMark(str(tmp_path), session_timeout_s=10.0, clock=lambda: now[0])
    mark.touch()
    now[0] -= 60.0  # the clock stepped back: the mark says nothing about the session
    assert not mark.held()
