import copy
import json
from typing import Any

import pytest

from ketch.common.errors import InvalidArgument
from ketch.spec.oci_runtime import default_spec, parse_mount_options, validate

BASE = default_spec()


def mutate(path: str, value: Any) -> dict[str, Any]:
    config = copy.deepcopy(BASE)
    node: Any = config
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return config


DELETE = object()


def test_default_specs_are_valid() -> None:
    validate(default_spec())
    validate(default_spec(rootless=True, uid=1000, gid=1000))
    # and survive a JSON round trip unchanged, unknown fields included
    config = default_spec()
    config["org.example/extra"] = {"kept": True}
    assert validate(json.loads(json.dumps(config))) == config


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("ociVersion", DELETE, "ociVersion: is required"),
        ("ociVersion", "2.0.0", "unsupported version"),
        ("root", DELETE, "root: is required"),
        ("root.path", 3, "root.path: must be a string"),
        ("process.args", [], "process.args: must name the program"),
        ("process.args", ["sh", 1], "process.args[1]: must be a string"),
        ("process.cwd", "relative", "process.cwd: 'relative' is not an absolute path"),
        ("process.env", ["NOEQUALS"], "process.env[0]: 'NOEQUALS' is not KEY=VALUE"),
        ("process.user", {"uid": -1}, "process.user.uid: must be at least 0"),
        ("process.capabilities.bounding", ["CAP_FLY"], "unknown capability 'CAP_FLY'"),
        ("process.rlimits", [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}], "unknown rlimit 'RLIMIT_FOO'"),
        (
            "process.rlimits",
            [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 1}],
            "soft limit 10 is above hard",
        ),
        ("process.oomScoreAdj", 5000, "outside -1000..1000"),
        (
            "linux.namespaces",
            [{"type": "pid"}, {"type": "foo"}],
            "linux.namespaces[1].type: unknown namespace type 'foo'",
        ),
        ("linux.namespaces", [{"type": "pid"}, {"type": "pid"}], "listed twice"),
        ("linux.namespaces", [{"type": "network", "path": "relative"}], "not an absolute path"),
        ("linux.namespaces", [{"type": "user"}, {"type": "mount"}], "needs linux.uidMappings"),
        ("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}], "need a new user namespace"),
        (
            "linux.devices",
            [{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}],
            "unknown device type 'z'",
        ),
        ("linux.devices", [{"path": "/dev/x", "type": "c"}], "linux.devices[0].major: must be an integer"),
        ("linux.maskedPaths", ["proc/kcore"], "linux.maskedPaths[0]"),
        ("linux.rootfsPropagation", "sideways", "unknown propagation"),
        ("mounts.0.destination", 5, "mounts[0].destination: must be a string"),
        ("hooks", {"prestart": [{"path": "rel"}]}, "hooks.prestart[0].path"),
        ("hooks", {"preboot": []}, "unknown hook kind 'preboot'"),
        ("hooks", {"poststop": [{"path": "/bin/true", "timeout": 0}]}, "timeout: must be at least 1"),
    ],
)
def test_validate_names_the_problem(path: str, value: Any, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate(mutate(path, value))
    assert message in str(info.value)
    assert str(info.value).startswith("config.json: ")


def test_hostname_needs_uts_namespace() -> None:
    config = mutate("linux.namespaces", [{"type": "mount"}])
    with pytest.raises(InvalidArgument, match="uts namespace"):
        validate(config)


def test_top_level_must_be_object() -> None:
    with pytest.raises(InvalidArgument, match="top level: must be an object"):
        validate([])


def test_mount_options() -> None:
    flags, propagation, data, ext = parse_mount_options(
        ["rbind", "ro", "nosuid", "rprivate", "size=64k", "mode=755", "tmpcopyup", "rw"]
    )
    assert flags == 0x1000 | 0x4000 | 0x2  # ro cleared again by the later rw
    assert propagation == [0x40000 | 0x4000]
    assert data == ["size=64k", "mode=755"]
    assert ext == ["tmpcopyup"]
