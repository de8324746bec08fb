"""What ketchd does at start: catch up with what the monitors did while no daemon was watching.

- running or paused in the database, monitor answering: watch it again (same pid, its log goes on);
- running or paused, monitor gone: the exit it left in exit.json is recorded (and the restart policy applies,
  as if the daemon had seen it); with no exit.json the status is lost and recorded as exit 255;
- restarting: the back-off timer died with the old daemon, so the start happens now;
- removing: a removal that the old daemon did not finish is finished;
- exited containers with ``always`` (or ``unless-stopped`` and not stopped by a user) start again, as
  dockerd starts them when it comes up.
"""

from __future__ import annotations

import logging

from ketch.common.errors import KetchError
from ketch.engine.containers import ContainerService
from ketch.engine.db import ContainerFilters
from ketch.engine.lifecycle import Event
from ketch.engine.model import Status
from ketch.shim.client import ShimClient

__all__ = ["reconcile"]

log = logging.getLogger("ketch.engine")


def _monitor_state(service: ContainerService, container_id: str) -> dict[str, object] | None:
    try:
        return ShimClient(service.paths(container_id).state_dir, timeout=5).call("state")
    except (OSError, KetchError):
        return None


def reconcile(service: ContainerService) -> dict[str, int]:
    """Returns counts by what was done, for the daemon's log."""
    counts = {"reattached": 0, "exited": 0, "restarted": 0, "removed": 0}
    with service._lock:
        containers = service.db.list_containers(ContainerFilters(all=True))
    for container in containers:
        cid, state = container.record.id, container.state
        policy = container.record.host_config.restart_policy
        try:
            if state.status in (Status.RUNNING, Status.PAUSED):
                answer = _monitor_state(service, cid)
                if answer is not None and answer.get("status") == "running":
                    service.reattach(cid)
                    counts["reattached"] += 1
                    continue
                try:
                    result = service.read_exit(cid)
                except KetchError:
                    result = {"exit_code": 255, "oom_killed": False, "lost": True}
                service.record_exit(cid, result)
                counts["exited"] += 1
            elif state.status is Status.RESTARTING:
                service.start(cid, event=Event.AUTO_START)
                counts["restarted"] += 1
            elif state.status in (Status.REMOVING, Status.DEAD) and state.status is Status.REMOVING:
                service.remove(cid, force=True)
                counts["removed"] += 1
            elif state.status is Status.EXITED and (
                policy.name == "always" or (policy.name == "unless-stopped" and not state.manually_stopped)
            ):
                service.start(cid, event=Event.AUTO_START)
                counts["restarted"] += 1
        except KetchError as exc:
            log.warning("reconciling container %s: %s", cid[:12], exc)
    return counts
