"""ketch-runtime under podman 4.3 (``podman --runtime /path/to/ketch-runtime``, conmon), compared with runc.

The checks are the docker module's ``RuntimeContract``; podman runs every container with ``--network none``
and its own cgroup parent, root, runroot, tmpdir and containers.conf (see daemons.PodmanSetup).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.interop import daemons
from tests.interop.test_docker_runtime import RuntimeContract

pytestmark = pytest.mark.interop


class TestPodman(RuntimeContract):
    @pytest.fixture
    def engine(self, podman_setup: tuple[daemons.PodmanSetup, daemons.Podman]) -> Iterator[daemons.Engine]:
        client = podman_setup[1]
        yield client
        client.remove_tracked()
