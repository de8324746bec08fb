"""The lifecycle table, every status against every event, and Docker's State and ps status derived from it."""

from __future__ import annotations

import dataclasses

import pytest

from ketch.common.errors import Conflict, KetchError, NotModified
from ketch.engine.lifecycle import (
    TRANSITIONS,
    Event,
    apply,
    human_duration,
    is_running,
    render_state,
    status_text,
    transition,
)
from ketch.engine.model import ContainerState, Health, Status

CID = "f2b7dc6128e2b38ceb4fe45a1448fe2af00ca3ee7959d7d89565b1ee7d4fe519"

# Written out independently of the module's table: one row per event, one column per status. A status name
# is where the event leads; anything else is the refusal, spelled out in REFUSALS.
COLUMNS = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
MATRIX = """
start          running    STARTED    PAUSED-START  STARTED     MARKED      running    MARKED
restart        running    running    running       running     RESTART-M   running    RESTART-M
stop           STOPPED    running    paused        exited      STOPPED     STOPPED    STOPPED
kill           NOT-RUN    running    paused        exited      NOT-RUN     NOT-RUN    NOT-RUN
pause          NOT-RUN    paused     ALREADY-P     RESTARTING  NOT-RUN     NOT-RUN    NOT-RUN
unpause        NOT-P      NOT-P      running       NOT-P       NOT-P       NOT-P      NOT-P
remove         removing   RM-RUN     RM-PAUSED     RM-RESTART  IN-PROG     removing   removing
force-remove   removing   removing   removing      removing    IN-PROG     removing   removing
exec           NOT-RUN    running    EXEC-P        RESTARTING  NOT-RUN     NOT-RUN    NOT-RUN
attach         created    running    ATTACH-P      ATTACH-R    removing    exited     dead
update         created    running    paused        restarting  UPDATE-M    exited     UPDATE-M
exit           BAD        exited     exited        BAD         removing    BAD        BAD
exit-restart   BAD        restarting restarting    BAD         BAD         BAD        BAD
auto-start     running    BAD        BAD           running     BAD         running    BAD
start-failed   created    BAD        BAD           exited      BAD         exited     BAD
remove-failed  BAD        BAD        BAD           BAD         dead        BAD        BAD
"""
STOP_FIRST = "Stop the container before attempting removal or force remove"
REFUSALS: dict[str, tuple[type[KetchError], str]] = {
    "STARTED": (NotModified, "Container is already started"),
    "STOPPED": (NotModified, "Container is already stopped"),
    "PAUSED-START": (Conflict, "cannot start a paused container, try unpause instead"),
    "MARKED": (Conflict, "container is marked for removal and cannot be started"),
    "RESTART-M": (Conflict, f"Cannot restart container {CID}: container is marked for removal and cannot be started"),
    "NOT-RUN": (Conflict, f"Container {CID} is not running"),
    "ALREADY-P": (Conflict, f"Container {CID} is already paused"),
    "NOT-P": (Conflict, f"Container {CID} is not paused"),
    "RESTARTING": (Conflict, f"Container {CID} is restarting, wait until the container is running"),
    "RM-RUN": (Conflict, f"You cannot remove a running container {CID}. {STOP_FIRST}"),
    "RM-RESTART": (Conflict, f"You cannot remove a restarting container {CID}. {STOP_FIRST}"),
    "RM-PAUSED": (Conflict, f"You cannot remove a paused container {CID}. Unpause and then stop the container "
                  "before attempting removal or force remove"),
    "IN-PROG": (Conflict, f"removal of container {CID} is already in progress"),
    "EXEC-P": (Conflict, f"Container {CID} is paused, unpause the container before exec"),
    "ATTACH-P": (Conflict, f"container {CID} is paused, unpause the container before attach"),
    "ATTACH-R": (Conflict, f"container {CID} is restarting, wait until the container is running"),
    "UPDATE-M": (Conflict, f'Cannot update container {CID}: container is marked for removal and cannot be "update"'),
}  # fmt: skip

CASES = [
    (Status(column), Event(row.split()[0]), cell)
    for row in MATRIX.strip().splitlines()
    for column, cell in zip(COLUMNS, row.split()[1:], strict=True)
]


def test_the_table_is_total() -> None:
    assert set(TRANSITIONS) == set(Status)
    for status, row in TRANSITIONS.items():
        assert set(row) == set(Event), status
    assert len(CASES) == len(Status) * len(Event)  # the matrix above covers every pair too


@pytest.mark.parametrize(("status", "event", "expected"), CASES, ids=[f"{s}-{e}" for s, e, _ in CASES])
def test_every_status_and_event(status: Status, event: Event, expected: str) -> None:
    if expected in COLUMNS:
        assert transition(status, event, CID) is Status(expected)
        return
    if expected == "BAD":
        error, message = Conflict, f"container {CID} cannot {event} while {status}"
    else:
        error, message = REFUSALS[expected]
    with pytest.raises(KetchError) as info:
        transition(status, event, CID)
    assert type(info.value) is error
    assert str(info.value) == message
    assert info.value.status == (304 if error is NotModified else 409)


def test_running_means_what_docker_means() -> None:
    assert {s for s in Status if is_running(s)} == {Status.RUNNING, Status.PAUSED, Status.RESTARTING}


NOW = 1_700_000_000_000_000_000


def test_start_records_the_process_and_forgets_failures() -> None:
    before = ContainerState(status=Status.EXITED, exit_code=3, error="old", restart_count=4, manually_stopped=True,
                            started_at=1, finished_at=2, oom_killed=True)  # fmt: skip
    after = apply(before, Event.START, CID, now=NOW, pid=4242)
    assert after.status is Status.RUNNING and after.pid == 4242 and after.started_at == NOW
    assert (
        after.exit_code == 0 and after.error == "" and after.restart_count == 0 and not after.manually_stopped
    )
    assert after.finished_at == 2 and after.oom_killed  # kept until the next exit, as moby does
    assert before.status is Status.EXITED and before.pid == 0  # the input is left alone


def test_auto_start_keeps_the_policy_history() -> None:
    waiting = ContainerState(status=Status.RESTARTING, restart_count=2, exit_code=1)
    after = apply(waiting, Event.AUTO_START, CID, now=NOW, pid=7)
    assert (
        after.status is Status.RUNNING
        and after.restart_count == 2
        and after.pid == 7
        and after.exit_code == 0
    )


def test_exits() -> None:
    running = ContainerState(status=Status.RUNNING, pid=9, started_at=NOW - 10)
    exited = apply(running, Event.EXIT, CID, now=NOW, exit_code=137, oom_killed=True)
    assert (exited.status, exited.pid, exited.exit_code, exited.finished_at) == (Status.EXITED, 0, 137, NOW)
    assert exited.oom_killed and exited.started_at == NOW - 10
    again = apply(running, Event.EXIT_RESTART, CID, now=NOW, exit_code=1)
    assert again.status is Status.RESTARTING and again.restart_count == 1 and again.pid == 0
    assert apply(again, Event.AUTO_START, CID, now=NOW, pid=10).restart_count == 1


def test_stop_marks_a_manual_stop_and_ends_a_pending_restart() -> None:
    running = ContainerState(status=Status.RUNNING, pid=9)
    stopping = apply(running, Event.STOP, CID)
    assert stopping.status is Status.RUNNING and stopping.manually_stopped and stopping.pid == 9
    waiting = ContainerState(status=Status.RESTARTING, exit_code=2)
    stopped = apply(waiting, Event.STOP, CID)
    assert stopped.status is Status.EXITED and stopped.exit_code == 2 and stopped.manually_stopped


def test_failures_are_recorded() -> None:
    created = ContainerState()
    failed = apply(
        created, Event.START_FAILED, CID, error='exec: "nope": executable file not found', exit_code=127
    )
    assert failed.status is Status.CREATED and failed.exit_code == 127 and "nope" in failed.error
    assert apply(created, Event.START_FAILED, CID, error="boom").exit_code == 128
    removing = ContainerState(status=Status.REMOVING)
    dead = apply(removing, Event.REMOVE_FAILED, CID, error="device or resource busy")
    assert dead.status is Status.DEAD and dead.error == "device or resource busy"


def test_a_refused_apply_changes_nothing() -> None:
    state = ContainerState(status=Status.PAUSED, pid=5)
    copy = dataclasses.replace(state)
    with pytest.raises(Conflict):
        apply(state, Event.PAUSE, CID)
    assert state == copy


@pytest.mark.parametrize(
    ("status", "flags"),
    [
        (Status.CREATED, (False, False, False, False)),
        (Status.RUNNING, (True, False, False, False)),
        (Status.PAUSED, (True, True, False, False)),
        (Status.RESTARTING, (True, False, True, False)),
        (Status.REMOVING, (False, False, False, False)),
        (Status.EXITED, (False, False, False, False)),
        (Status.DEAD, (False, False, False, True)),
    ],
)
def test_state_flags_come_from_the_one_status(status: Status, flags: tuple[bool, bool, bool, bool]) -> None:
    out = render_state(ContainerState(status=status, pid=12, exit_code=1, started_at=NOW, error="e"))
    assert list(out) == ["Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid", "ExitCode",
                         "Error", "StartedAt", "FinishedAt"]  # fmt: skip
    assert out["Status"] == str(status)
    assert (out["Running"], out["Paused"], out["Restarting"], out["Dead"]) == flags
    assert out["Pid"] == 12 and out["ExitCode"] == 1 and out["Error"] == "e" and out["OOMKilled"] is False
    assert out["StartedAt"] == "2023-11-14T22:13:20Z" and out["FinishedAt"] == "0001-01-01T00:00:00Z"


def test_health_is_rendered_when_there_is_one() -> None:
    out = render_state(ContainerState(status=Status.RUNNING, health=Health(status="healthy")))
    assert out["Health"] == {"Status": "healthy", "FailingStreak": 0, "Log": []}


S = 10**9


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "Less than a second"), (0.99, "Less than a second"), (1, "1 second"), (59.9, "59 seconds"),
        (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"),
        (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"), (47.4 * 3600, "47 hours"),
        (47.6 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"), (59 * 86400, "8 weeks"),
        (60 * 86400, "2 months"), (729 * 86400, "24 months"), (730 * 86400, "2 years"),
    ],
)  # fmt: skip
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (ContainerState(), "Created"),
        (ContainerState(status=Status.RUNNING, started_at=NOW - 5 * S), "Up 5 seconds"),
        (ContainerState(status=Status.PAUSED, started_at=NOW - 120 * S), "Up 2 minutes (Paused)"),
        (ContainerState(status=Status.RESTARTING, exit_code=1, finished_at=NOW - 3 * S),
         "Restarting (1) 3 seconds ago"),
        (ContainerState(status=Status.EXITED, exit_code=0, started_at=1, finished_at=NOW - 3600 * S),
         "Exited (0) About an hour ago"),
        (ContainerState(status=Status.EXITED, started_at=0, finished_at=0), "Created"),
        (ContainerState(status=Status.REMOVING), "Removal In Progress"),
        (ContainerState(status=Status.DEAD), "Dead"),
        (ContainerState(status=Status.RUNNING, started_at=NOW - S, health=Health()), "Up 1 second (health: starting)"),
        (ContainerState(status=Status.RUNNING, started_at=NOW - S, health=Health(status="unhealthy")),
         "Up 1 second (unhealthy)"),
    ],
)  # fmt: skip
def test_ps_status_text(state: ContainerState, text: str) -> None:
    assert status_text(state, now=NOW) == text
