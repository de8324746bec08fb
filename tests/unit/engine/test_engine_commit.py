"""engine/commit.py without containers: moby's merge of a commit's Config with the container's, and the
read-only view an export mounts for a stopped container."""

from __future__ import annotations

from ketch.engine.commit import _read_only_view, merge_config
from ketch.image.snapshots.base import Mount

CONTAINER = {
    "Hostname": "abc", "User": "app", "ExposedPorts": {"80/tcp": {}}, "Env": ["PATH=/bin", "A=1"],
    "Cmd": ["run"], "Labels": {"l": "c", "m": "c"}, "WorkingDir": "/srv", "Volumes": {"/data": {}},
    "Entrypoint": None, "StopSignal": "SIGINT", "Healthcheck": {"Test": ["CMD", "true"], "Retries": 3},
}  # fmt: skip


def test_an_empty_config_takes_what_merge_fills_and_nothing_else() -> None:
    merged = merge_config({}, CONTAINER)
    assert merged["User"] == "app" and merged["WorkingDir"] == "/srv" and merged["StopSignal"] == "SIGINT"
    assert merged["Env"] == ["PATH=/bin", "A=1"] and merged["Cmd"] == ["run"]
    assert merged["ExposedPorts"] == {"80/tcp": {}} and merged["Volumes"] == {"/data": {}}
    assert merged["Labels"] == {"l": "c", "m": "c"}
    assert merged["Healthcheck"] == {"Test": ["CMD", "true"], "Retries": 3}
    assert "Hostname" not in merged  # moby's merge leaves it out


def test_given_fields_win_and_lists_combine() -> None:
    user = {"Env": ["A=2", "B=3"], "Labels": {"l": "u"}, "ExposedPorts": {"443/tcp": {}},
            "Volumes": {"/logs": {}}, "Healthcheck": {"Test": ["CMD", "false"], "Retries": 0}}  # fmt: skip
    merged = merge_config(user, CONTAINER)
    assert merged["Env"] == ["A=2", "B=3", "PATH=/bin"]
    assert merged["Labels"] == {"l": "u", "m": "c"}
    assert merged["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}}
    assert merged["Volumes"] == {"/logs": {}, "/data": {}}
    # Zero fields come from the container.
    assert merged["Healthcheck"] == {"Test": ["CMD", "false"], "Retries": 3}


def test_an_entrypoint_keeps_the_containers_cmd_out() -> None:
    merged = merge_config({"Entrypoint": ["/bin/app"]}, CONTAINER)
    assert merged["Entrypoint"] == ["/bin/app"] and merged.get("Cmd") is None
    merged = merge_config({"Cmd": ["other"]}, {**CONTAINER, "Entrypoint": ["/init"]})
    assert merged["Cmd"] == ["other"] and merged["Entrypoint"] == ["/init"]


def test_the_export_view_stacks_the_upper_on_the_lowers() -> None:
    options = ("index=off", "workdir=/s/3/work", "upperdir=/s/3/fs", "lowerdir=/s/2/fs:/s/1/fs")
    active = Mount(type="overlay", source="overlay", options=options)
    assert _read_only_view([active]) == Mount(
        type="overlay", source="overlay", options=("index=off", "lowerdir=/s/3/fs:/s/2/fs:/s/1/fs")
    )
    assert _read_only_view([Mount(type="bind", source="/s/4/fs", options=("rw", "rbind"))]) == "/s/4/fs"
