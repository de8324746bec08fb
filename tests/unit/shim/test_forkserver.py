from __future__ import annotations

import pytest

from ketch.common.errors import InvalidArgument
from ketch.shim.forkserver import config_from_dict, config_to_dict, main
from ketch.shim.monitor import MonitorConfig


def test_config_round_trips_through_a_request() -> None:
    config = MonitorConfig(container_id="c", bundle="/b", state_dir="/s", tty=True, log_max_size=10)
    assert config_from_dict(config_to_dict(config)) == config


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"container_id": "c", "bundle": "/b", "state_dir": "/s", "colour": "red"}, "unknown .*'colour'"),
        ({"container_id": "c", "bundle": "/b", "state_dir": "/s", "tty": 1}, "'tty' must be bool"),
        ({"container_id": "c", "bundle": "/b", "state_dir": "/s", "log_max_size": True}, "must be int"),
        ({"container_id": "c", "bundle": 3, "state_dir": "/s"}, "'bundle' must be str"),
        ({"container_id": "c", "bundle": "/b"}, "state_dir"),
    ],
)
def test_bad_requests(fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        config_from_dict(fields)


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--parent", "1"]) == 2
    assert main(["--socket"]) == 2
    assert "socket" in capsys.readouterr().err
