"""Exec instances (``docker exec``): created, started through the container's monitor, inspected.

Like moby, execs live in memory only: a restart of ketchd forgets them (the processes keep running under the
monitor). An exec runs with the container's environment plus its own, the container's user unless it names
one, and the container's capabilities (all of them with ``Privileged``).

Starting is in two steps, as in moby: :meth:`ExecService.startable` checks what moby's ``ExecExists`` checks
(the exec exists, its container runs and is not paused), whose refusals are HTTP answers; :meth:`prepare` then
claims the exec and writes its process, and its errors (already run, unknown user) come after the connection
is hijacked, as text on the stream. An exec that fails to start is done, with exit code 126.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from ketch.common import fastjson
from ketch.common.atomic import atomic_write
from ketch.common.errors import Conflict, InvalidArgument, NotFound
from ketch.common.ids import generate_id
from ketch.engine import lifecycle, ocispec
from ketch.engine.containers import ContainerService
from ketch.engine.lifecycle import Event

__all__ = ["ExecInstance", "ExecService"]


@dataclass(slots=True, kw_only=True)
class ExecInstance:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str]
    user: str
    working_dir: str
    tty: bool
    privileged: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    detach_keys: str
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    launched: threading.Event = field(default_factory=threading.Event)  # running, or failed to start

    def to_api(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty,
                "entrypoint": self.cmd[0] if self.cmd else "",
                "arguments": self.cmd[1:],
                "privileged": self.privileged,
                **({"user": self.user} if self.user else {}),  # omitempty in moby's ExecProcessConfig
            },
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


def _strs(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                              f"ExecConfig.{key} of type []string")  # fmt: skip
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                              f"ExecConfig.{key} of type bool")  # fmt: skip
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                              f"ExecConfig.{key} of type string")  # fmt: skip
    return value


class ExecService:
    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self._lock = threading.Lock()
        self._execs: dict[str, ExecInstance] = {}

    def create(self, ref: str, body: Any) -> str:
        if not isinstance(body, dict):
            raise InvalidArgument("json: cannot unmarshal into Go value of type types.ExecConfig")
        container = self.containers.get(ref)
        cid = container.record.id
        lifecycle.transition(container.state.status, Event.EXEC, cid)
        cmd = _strs(body, "Cmd")
        if not cmd:
            raise InvalidArgument("No exec command specified")
        for entry in _strs(body, "Env"):
            if not entry.partition("=")[0]:
                raise InvalidArgument(f"invalid environment variable: {entry}")
        instance = ExecInstance(
            id=generate_id(), container_id=cid, cmd=cmd, env=_strs(body, "Env"), user=_text(body, "User"),
            working_dir=_text(body, "WorkingDir"), tty=_flag(body, "Tty"), privileged=_flag(body, "Privileged"),
            attach_stdin=_flag(body, "AttachStdin"), attach_stdout=_flag(body, "AttachStdout"),
            attach_stderr=_flag(body, "AttachStderr"), detach_keys=_text(body, "DetachKeys"),
        )  # fmt: skip
        with self._lock:
            self._execs[instance.id] = instance
        self.containers.publish(container.record, f"exec_create: {' '.join(cmd)}", execID=instance.id)
        return instance.id

    def get(self, exec_id: str) -> ExecInstance:
        with self._lock:
            instance = self._execs.get(exec_id)
        if instance is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def ids_for(self, container_id: str) -> list[str]:
        with self._lock:
            return [
                e.id for e in self._execs.values() if e.container_id == container_id and not e.done.is_set()
            ]

    def startable(self, exec_id: str) -> ExecInstance:
        """The exec, if it exists and its container runs (moby's ExecExists): NotFound or Conflict otherwise."""
        instance = self.get(exec_id)
        container = self.containers.get(instance.container_id)
        lifecycle.transition(container.state.status, Event.EXEC, container.record.id)
        return instance

    def prepare(
        self, exec_id: str, *, detach: bool, tty: bool | None
    ) -> tuple[ExecInstance, str, dict[str, Any]]:
        """Claim the exec and write its OCI process file; returns (exec, shim state dir, exec request)."""
        instance = self.startable(exec_id)
        with self._lock:
            if instance.exit_code is not None:
                raise Conflict(f"Error: Exec command {exec_id} has already run")
            if instance.started:
                raise Conflict(f"Error: Exec command {exec_id} is already running")
            instance.started = True
        container = self.containers.get(instance.container_id)
        cid = container.record.id
        try:
            if tty is not None:
                instance.tty = tty
            record = container.record
            paths = self.containers.paths(cid)
            hostname = record.config.hostname or cid[:12]
            env = ocispec.container_env(record, hostname)
            merged = {e.partition("=")[0]: e for e in env}
            if instance.tty and "TERM" not in merged:
                merged["TERM"] = "TERM=xterm"
            for entry in instance.env:
                merged[entry.partition("=")[0]] = entry
            process = ocispec.build_process(
                record, paths.rootfs, args=instance.cmd, env=list(merged.values()),
                user=instance.user or record.config.user, cwd=instance.working_dir or record.config.working_dir,
                tty=instance.tty, privileged=instance.privileged,
            )  # fmt: skip
            process_path = os.path.join(paths.state_dir, f"exec-{exec_id}.process.json")
            atomic_write(process_path, fastjson.dumps(process).encode(), mode=0o600, durable=False)
        except BaseException:
            self.failed(instance)
            raise
        request = {
            "op": "exec", "id": exec_id, "process": process_path, "tty": instance.tty,
            "stdin": instance.attach_stdin and not detach, "stdout": instance.attach_stdout and not detach,
            "stderr": instance.attach_stderr and not detach, "detach": detach,
        }  # fmt: skip
        self.containers.publish(record, f"exec_start: {' '.join(instance.cmd)}", execID=exec_id)
        return instance, paths.state_dir, request

    def started(self, instance: ExecInstance, pid: int) -> None:
        instance.pid = pid
        instance.running = True
        instance.launched.set()

    def failed(self, instance: ExecInstance) -> None:
        """The exec could not start: done, with moby's exit code 126 (no exec_die: nothing ran)."""
        instance.running = False
        instance.exit_code = 126
        instance.launched.set()
        instance.done.set()

    def finished(self, instance: ExecInstance, exit_code: int) -> None:
        instance.running = False
        instance.exit_code = exit_code
        instance.launched.set()
        instance.done.set()
        record = self.containers.get(instance.container_id).record
        self.containers.publish(record, "exec_die", execID=instance.id, exitCode=str(exit_code))

    def forget_container(self, container_id: str) -> None:
        with self._lock:
            for exec_id in [e.id for e in self._execs.values() if e.container_id == container_id]:
                del self._execs[exec_id]
