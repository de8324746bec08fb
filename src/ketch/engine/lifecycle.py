"""The container lifecycle as one table: ``(status, event) -> new status``, or the error Docker answers.

Written the way h11/_state.py writes its machine: :data:`TRANSITIONS` is data, :func:`transition` looks an
event up in it and raises the refusal it finds, and :func:`apply` returns the next :class:`ContainerState`
with the fields that go with the move (pid, times, exit code). Nothing here performs any work or I/O; the
engine asks first, does the work, then stores what :func:`apply` returned.

Events are of two kinds:

- *requests* a client makes. Those that change the status once the work is done (start, restart, pause,
  unpause, remove) map to the status the container then has. Those that only set work going (stop, kill,
  exec, attach, update) map to the current status: the status changes when the shim reports the exit. Stop
  and kill of a ``restarting`` container are the exception: there is no process, so they end it at once.
- *observations* the shim, the restart manager and the remover report: exit (it stays down), exit-restart
  (the restart policy starts it again after a back-off), auto-start, start-failed, remove-failed.

A refused request raises NotModified (304) or Conflict (409) with moby's wording (daemon/start.go, stop.go,
pause.go, unpause.go, delete.go, exec.go, attach.go, update.go, errors.go). An impossible observation (an exit
from a container that never ran) raises Conflict too: it means the caller's bookkeeping is wrong.

Docker's State object keeps independent booleans; ketch keeps the one :class:`Status` and derives Running,
Paused, Restarting and Dead from it in :func:`render_state` (podman's define/containerstate.go).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, replace
from typing import Any

from ketch.common.errors import Conflict, KetchError, NotModified
from ketch.common.units import human_duration
from ketch.engine.model import ContainerState, Status, format_time

__all__ = [
    "TRANSITIONS",
    "Event",
    "Refusal",
    "apply",
    "human_duration",
    "is_running",
    "render_state",
    "status_text",
    "transition",
]


class Event(enum.StrEnum):
    # requests
    START = "start"
    RESTART = "restart"
    STOP = "stop"
    KILL = "kill"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    REMOVE = "remove"
    FORCE_REMOVE = "force-remove"
    EXEC = "exec"
    ATTACH = "attach"
    UPDATE = "update"
    # observations
    EXIT = "exit"
    EXIT_RESTART = "exit-restart"
    AUTO_START = "auto-start"
    START_FAILED = "start-failed"
    REMOVE_FAILED = "remove-failed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The error a refused move raises; ``{id}`` in the message is the container's ID."""

    error: type[KetchError]
    message: str

    def exception(self, container_id: str, status: Status, event: Event) -> KetchError:
        return self.error(self.message.format(id=container_id, status=status, event=event))


_STARTED = Refusal(NotModified, "Container is already started")
_STOPPED = Refusal(NotModified, "Container is already stopped")
_NOT_RUNNING = Refusal(Conflict, "Container {id} is not running")
_NOT_PAUSED = Refusal(Conflict, "Container {id} is not paused")
_ALREADY_PAUSED = Refusal(Conflict, "Container {id} is already paused")
_IS_RESTARTING = Refusal(Conflict, "Container {id} is restarting, wait until the container is running")
_START_PAUSED = Refusal(Conflict, "cannot start a paused container, try unpause instead")
_START_MARKED = Refusal(Conflict, "container is marked for removal and cannot be started")
_RESTART_MARKED = Refusal(
    Conflict, "Cannot restart container {id}: container is marked for removal and cannot be started"
)
_UPDATE_MARKED = Refusal(
    Conflict, 'Cannot update container {id}: container is marked for removal and cannot be "update"'
)
_REMOVING = Refusal(Conflict, "removal of container {id} is already in progress")
_STOP_FIRST = "Stop the container before attempting removal or force remove"
_RM_RUNNING = Refusal(Conflict, "You cannot remove a running container {id}. " + _STOP_FIRST)
_RM_RESTARTING = Refusal(Conflict, "You cannot remove a restarting container {id}. " + _STOP_FIRST)
_RM_PAUSED = Refusal(
    Conflict,
    "You cannot remove a paused container {id}. Unpause and then " + _STOP_FIRST[0].lower() + _STOP_FIRST[1:],
)
_EXEC_PAUSED = Refusal(Conflict, "Container {id} is paused, unpause the container before exec")
_ATTACH_PAUSED = Refusal(Conflict, "container {id} is paused, unpause the container before attach")
_ATTACH_RESTARTING = Refusal(Conflict, "container {id} is restarting, wait until the container is running")
_IMPOSSIBLE = Refusal(Conflict, "container {id} cannot {event} while {status}")

S, E = Status, Event
# Each row lists every event; the unit tests check that the table is total.
TRANSITIONS: dict[Status, dict[Event, Status | Refusal]] = {
    S.CREATED: {
        E.START: S.RUNNING, E.RESTART: S.RUNNING, E.STOP: _STOPPED, E.KILL: _NOT_RUNNING,
        E.PAUSE: _NOT_RUNNING, E.UNPAUSE: _NOT_PAUSED, E.REMOVE: S.REMOVING, E.FORCE_REMOVE: S.REMOVING,
        E.EXEC: _NOT_RUNNING, E.ATTACH: S.CREATED, E.UPDATE: S.CREATED,
        E.EXIT: _IMPOSSIBLE, E.EXIT_RESTART: _IMPOSSIBLE, E.AUTO_START: S.RUNNING,
        E.START_FAILED: S.CREATED, E.REMOVE_FAILED: _IMPOSSIBLE,
    },
    S.RUNNING: {
        E.START: _STARTED, E.RESTART: S.RUNNING, E.STOP: S.RUNNING, E.KILL: S.RUNNING,
        E.PAUSE: S.PAUSED, E.UNPAUSE: _NOT_PAUSED, E.REMOVE: _RM_RUNNING, E.FORCE_REMOVE: S.REMOVING,
        E.EXEC: S.RUNNING, E.ATTACH: S.RUNNING, E.UPDATE: S.RUNNING,
        E.EXIT: S.EXITED, E.EXIT_RESTART: S.RESTARTING, E.AUTO_START: _IMPOSSIBLE,
        E.START_FAILED: _IMPOSSIBLE, E.REMOVE_FAILED: _IMPOSSIBLE,
    },
    S.PAUSED: {
        E.START: _START_PAUSED, E.RESTART: S.RUNNING, E.STOP: S.PAUSED, E.KILL: S.PAUSED,
        E.PAUSE: _ALREADY_PAUSED, E.UNPAUSE: S.RUNNING, E.REMOVE: _RM_PAUSED, E.FORCE_REMOVE: S.REMOVING,
        E.EXEC: _EXEC_PAUSED, E.ATTACH: _ATTACH_PAUSED, E.UPDATE: S.PAUSED,
        E.EXIT: S.EXITED, E.EXIT_RESTART: S.RESTARTING, E.AUTO_START: _IMPOSSIBLE,
        E.START_FAILED: _IMPOSSIBLE, E.REMOVE_FAILED: _IMPOSSIBLE,
    },
    S.RESTARTING: {
        E.START: _STARTED, E.RESTART: S.RUNNING, E.STOP: S.EXITED, E.KILL: S.EXITED,
        E.PAUSE: _IS_RESTARTING, E.UNPAUSE: _NOT_PAUSED, E.REMOVE: _RM_RESTARTING, E.FORCE_REMOVE: S.REMOVING,
        E.EXEC: _IS_RESTARTING, E.ATTACH: _ATTACH_RESTARTING, E.UPDATE: S.RESTARTING,
        E.EXIT: _IMPOSSIBLE, E.EXIT_RESTART: _IMPOSSIBLE, E.AUTO_START: S.RUNNING,
        E.START_FAILED: S.EXITED, E.REMOVE_FAILED: _IMPOSSIBLE,
    },
    S.REMOVING: {
        E.START: _START_MARKED, E.RESTART: _RESTART_MARKED, E.STOP: _STOPPED, E.KILL: _NOT_RUNNING,
        E.PAUSE: _NOT_RUNNING, E.UNPAUSE: _NOT_PAUSED, E.REMOVE: _REMOVING, E.FORCE_REMOVE: _REMOVING,
        E.EXEC: _NOT_RUNNING, E.ATTACH: S.REMOVING, E.UPDATE: _UPDATE_MARKED,
        # a forced removal kills a running container: its exit arrives while the removal goes on
        E.EXIT: S.REMOVING, E.EXIT_RESTART: _IMPOSSIBLE, E.AUTO_START: _IMPOSSIBLE,
        E.START_FAILED: _IMPOSSIBLE, E.REMOVE_FAILED: S.DEAD,
    },
    S.EXITED: {
        E.START: S.RUNNING, E.RESTART: S.RUNNING, E.STOP: _STOPPED, E.KILL: _NOT_RUNNING,
        E.PAUSE: _NOT_RUNNING, E.UNPAUSE: _NOT_PAUSED, E.REMOVE: S.REMOVING, E.FORCE_REMOVE: S.REMOVING,
        E.EXEC: _NOT_RUNNING, E.ATTACH: S.EXITED, E.UPDATE: S.EXITED,
        E.EXIT: _IMPOSSIBLE, E.EXIT_RESTART: _IMPOSSIBLE, E.AUTO_START: S.RUNNING,
        E.START_FAILED: S.EXITED, E.REMOVE_FAILED: _IMPOSSIBLE,
    },
    S.DEAD: {
        E.START: _START_MARKED, E.RESTART: _RESTART_MARKED, E.STOP: _STOPPED, E.KILL: _NOT_RUNNING,
        E.PAUSE: _NOT_RUNNING, E.UNPAUSE: _NOT_PAUSED, E.REMOVE: S.REMOVING, E.FORCE_REMOVE: S.REMOVING,
        E.EXEC: _NOT_RUNNING, E.ATTACH: S.DEAD, E.UPDATE: _UPDATE_MARKED,
        E.EXIT: _IMPOSSIBLE, E.EXIT_RESTART: _IMPOSSIBLE, E.AUTO_START: _IMPOSSIBLE,
        E.START_FAILED: _IMPOSSIBLE, E.REMOVE_FAILED: _IMPOSSIBLE,
    },
}  # fmt: skip
del S, E

_RUNNING_LIKE = frozenset({Status.RUNNING, Status.PAUSED, Status.RESTARTING})


def is_running(status: Status) -> bool:
    """Docker's ``State.Running``: true while paused and while waiting to restart, too."""
    return status in _RUNNING_LIKE


def transition(status: Status, event: Event, container_id: str) -> Status:
    """The status after ``event``; raises the refusal the table holds instead."""
    outcome = TRANSITIONS[status][event]
    if isinstance(outcome, Refusal):
        raise outcome.exception(container_id, status, event)
    return outcome


def apply(
    state: ContainerState,
    event: Event,
    container_id: str,
    *,
    now: int | None = None,
    pid: int = 0,
    exit_code: int = 0,
    oom_killed: bool = False,
    error: str = "",
) -> ContainerState:
    """A new state after ``event`` (``state`` is left as it was). ``now`` is unix nanoseconds; ``pid`` goes
    with starts, ``exit_code`` and ``oom_killed`` with exits, ``error`` with failures."""
    status = transition(state.status, event, container_id)
    at = time.time_ns() if now is None else now
    new = replace(state, status=status)
    if event in (Event.START, Event.RESTART, Event.AUTO_START):
        new.pid, new.started_at, new.exit_code, new.error = pid, at, 0, ""
        if event is not Event.AUTO_START:  # a user's start forgets the policy's history
            new.manually_stopped, new.restart_count = False, 0
    elif event in (Event.EXIT, Event.EXIT_RESTART):
        new.pid, new.finished_at, new.exit_code, new.oom_killed = 0, at, exit_code, oom_killed
        if event is Event.EXIT_RESTART:
            new.restart_count += 1
    elif event is Event.STOP:
        new.manually_stopped = True
    elif event is Event.START_FAILED:
        # moby keeps the status and records why, with 126/127 for a command that cannot run, else 128
        new.error, new.exit_code = error, exit_code or 128
    elif event is Event.REMOVE_FAILED:
        new.error = error
    return new


def render_state(state: ContainerState) -> dict[str, Any]:
    """Docker's ``State`` object of ``GET /containers/{id}/json``, derived from the one status."""
    out: dict[str, Any] = {
        "Status": str(state.status),
        "Running": is_running(state.status),
        "Paused": state.status is Status.PAUSED,
        "Restarting": state.status is Status.RESTARTING,
        "OOMKilled": state.oom_killed,
        "Dead": state.status is Status.DEAD,
        "Pid": state.pid,
        "ExitCode": state.exit_code,
        "Error": state.error,
        "StartedAt": format_time(state.started_at),
        "FinishedAt": format_time(state.finished_at),
    }
    if state.health is not None:
        out["Health"] = state.health.to_api()
    return out


def status_text(state: ContainerState, now: int | None = None) -> str:
    """The ``Status`` column of ``docker ps`` (moby container.State.String)."""
    at = time.time_ns() if now is None else now
    since_start = human_duration((at - state.started_at) / 1e9)
    if state.status is Status.PAUSED:
        return f"Up {since_start} (Paused)"
    if state.status is Status.RESTARTING:
        return f"Restarting ({state.exit_code}) {human_duration((at - state.finished_at) / 1e9)} ago"
    if state.status is Status.RUNNING:
        if state.health is not None:
            health = "health: starting" if state.health.status == "starting" else state.health.status
            return f"Up {since_start} ({health})"
        return f"Up {since_start}"
    if state.status is Status.REMOVING:
        return "Removal In Progress"
    if state.status is Status.DEAD:
        return "Dead"
    if state.started_at == 0:
        return "Created"
    if state.finished_at == 0:
        return ""
    return f"Exited ({state.exit_code}) {human_duration((at - state.finished_at) / 1e9)} ago"
