"""The image's defaults merged into a container's Config at create (moby daemon/commit.go merge).

The merged Config is what the container keeps and what ``docker inspect`` shows: the user's Env first, then
the image's variables the user did not set; Cmd from the image only when neither Cmd nor Entrypoint was
given; the image's labels under the user's; the image's Healthcheck with each field the user set (non-zero)
in its place.
"""

from __future__ import annotations

from dataclasses import replace

from ketch.common.errors import InvalidArgument
from ketch.engine.model import ContainerConfig, HealthConfig
from ketch.spec import oci_image

__all__ = ["merge_image_config"]


def merge_image_config(user: ContainerConfig, image: oci_image.ContainerConfig) -> ContainerConfig:
    env = list(user.env or ())
    keys = {entry.partition("=")[0] for entry in env}
    env += [entry for entry in image.env if entry.partition("=")[0] not in keys]
    ports = tuple(dict.fromkeys([*image.exposed_ports, *(user.exposed_ports or ())]))
    labels = {**image.labels, **(user.labels or {})}
    entrypoint, cmd = user.entrypoint, user.cmd
    if not entrypoint:
        if not cmd:
            cmd = image.cmd
        if entrypoint is None:
            entrypoint = image.entrypoint
    if not entrypoint and not cmd:
        raise InvalidArgument("No command specified")
    volumes = tuple(dict.fromkeys([*image.volumes, *(user.volumes or ())]))
    return replace(
        user,
        user=user.user or image.user,
        env=tuple(env) if env else user.env,
        exposed_ports=ports or None,
        labels=labels,
        entrypoint=entrypoint,
        cmd=cmd,
        working_dir=user.working_dir or image.working_dir,
        volumes=volumes or user.volumes,
        stop_signal=user.stop_signal or image.stop_signal,
        healthcheck=_merge_healthcheck(user.healthcheck, image.healthcheck),
    )


def _merge_healthcheck(user: HealthConfig | None, image: oci_image.Healthcheck | None) -> HealthConfig | None:
    if image is None:
        return user
    # HealthConfig has no StartInterval (API 1.44), so the image's is not carried over
    if user is None:
        user = HealthConfig()
    return replace(
        user,
        test=user.test or image.test or None,
        interval=user.interval or image.interval,
        timeout=user.timeout or image.timeout,
        start_period=user.start_period or image.start_period,
        retries=user.retries or image.retries,
    )
