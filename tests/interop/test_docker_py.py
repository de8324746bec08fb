"""docker-py (7.x) against ketchd: the high-level ``DockerClient`` and the low-level ``APIClient``.

Containers: run (attached output, detached, ContainerError on a non-zero exit), create/start/stop/kill/remove,
logs followed while the container writes, exec_run (output, exit code, stream, demux, environment, user,
working directory), attach_socket with stdin (stdcopy frames on the raw socket), wait, top, stats, pause,
rename, update, reload/attrs and list filters. Images: pull and push through a private docker-registry on
127.0.0.1 (loopback registries may use plain HTTP without ``--insecure-registry``, as in dockerd), save, load,
tag, get, list and remove. Errors: the typed exceptions docker-py raises from ketchd's status codes.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import socket
import struct
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.image import registry as reg
from tests.interop.ketchd import Ketchd

docker = pytest.importorskip("docker")
from docker import errors as derrors  # noqa: E402

# docker-py leaves the hijacked sockets of attach and streamed exec/attach calls to the garbage collector
pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore::ResourceWarning")]

IMAGE = "busybox:ketch"
FRAME = struct.Struct(">BxxxL")  # stdcopy header: stream, 3 bytes padding, big-endian length


@pytest.fixture(autouse=True)
def _collect_leaked_sockets() -> Iterator[None]:
    """Collect docker-py's leaked sockets here, not in some later module's test where warnings are errors."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(scope="module")
def client(ketchd: Ketchd) -> Iterator[Any]:
    c = docker.DockerClient(base_url=ketchd.host, timeout=60)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def api(client: Any) -> Any:
    return client.api


@pytest.fixture
def name(client: Any) -> Iterator[str]:
    """A unique container name; whatever carries it is removed after the test."""
    value = "dp-" + uuid.uuid4().hex[:10]
    yield value
    for container in client.containers.list(all=True, filters={"name": value}):
        container.remove(force=True)


def _names(client: Any, **filters: Any) -> set[str]:
    return {c.name for c in client.containers.list(all=True, filters=filters)}


def _wait_status(container: Any, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        if container.status == status:
            return
        assert time.monotonic() < deadline, f"{container.name} stayed {container.status}, expected {status}"
        time.sleep(0.05)


def _read_frames(sock: socket.socket, want: bytes, timeout: float = 10) -> dict[int, bytes]:
    """Read stdcopy frames until stdout holds ``want`` (or the stream ends); bytes by stream number."""
    got: dict[int, bytes] = {1: b"", 2: b""}
    buffer = b""
    sock.settimeout(timeout)
    while want not in got[1]:
        data = sock.recv(65536)
        if not data:
            break
        buffer += data
        while len(buffer) >= FRAME.size:
            stream, size = FRAME.unpack_from(buffer)
            if len(buffer) < FRAME.size + size:
                break
            got[stream] = got.get(stream, b"") + buffer[FRAME.size : FRAME.size + size]
            buffer = buffer[FRAME.size + size :]
    return got


# ---- containers: run ------------------------------------------------------------------------------------


def test_run_attached_returns_output(client: Any, name: str) -> None:
    out = client.containers.run(IMAGE, ["sh", "-c", "echo out; echo err >&2"], name=name)
    assert out == b"out\n"  # docker-py asks for stdout only by default
    client.containers.get(name).remove()
    both = client.containers.run(
        IMAGE, ["sh", "-c", "echo out; sleep 0.1; echo err >&2"], stderr=True, remove=True
    )
    assert both == b"out\nerr\n"
    assert name not in _names(client)


def test_run_with_tty_returns_raw_output(client: Any) -> None:
    out = client.containers.run(IMAGE, ["sh", "-c", "printf 'x\\ny'"], tty=True, remove=True)
    assert out == b"x\r\ny"


def test_run_failure_raises_container_error(client: Any, name: str) -> None:
    with pytest.raises(derrors.ContainerError) as caught:
        client.containers.run(IMAGE, ["sh", "-c", "echo broken >&2; exit 3"], name=name)
    assert caught.value.exit_status == 3
    assert caught.value.stderr == b"broken\n"
    assert caught.value.container.name == name


def test_run_detached_inspect_and_lifecycle(client: Any, name: str) -> None:
    container = client.containers.run(IMAGE, ["sleep", "300"], name=name, detach=True, labels={"dp": name})
    assert container.name == name
    container.reload()
    assert container.status == "running"
    state = container.attrs["State"]
    assert state["Running"] is True and state["Pid"] > 0
    assert container.attrs["Config"]["Labels"] == {"dp": name}
    assert container.attrs["Config"]["Image"] == IMAGE
    assert container.image.tags == [IMAGE]

    top = container.top()
    assert "PID" in top["Titles"]
    assert any("sleep 300" in " ".join(p) for p in top["Processes"])

    stats = container.stats(stream=False)
    assert stats["id"] == container.id
    assert stats["memory_stats"]["usage"] > 0 and stats["memory_stats"]["limit"] > 0
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["cpu_stats"]["system_cpu_usage"] > 0
    assert "cpu_usage" in stats["precpu_stats"]

    container.pause()
    container.reload()
    assert container.status == "paused" and container.attrs["State"]["Paused"] is True
    container.unpause()
    container.reload()
    assert container.status == "running" and container.attrs["State"]["Paused"] is False

    renamed = name + "-r"
    try:
        container.rename(renamed)
        container.reload()
        assert container.name == renamed
        assert client.containers.get(renamed).id == container.id
        with pytest.raises(derrors.NotFound):
            client.containers.get(name)
    finally:
        container.rename(name)

    result = container.update(mem_limit="64m", memswap_limit="128m", cpu_shares=512)
    assert not result["Warnings"]
    container.reload()
    host = container.attrs["HostConfig"]
    assert host["Memory"] == 64 << 20 and host["MemorySwap"] == 128 << 20 and host["CpuShares"] == 512

    started = time.monotonic()
    container.stop(timeout=1)  # sleep as pid 1 has no SIGTERM handler, so the kernel ignores it: SIGKILL
    assert time.monotonic() - started < 10
    assert container.wait(timeout=10)["StatusCode"] == 137
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["ExitCode"] == 137
    container.remove()
    assert name not in _names(client)


def _wait_log(container: Any, text: bytes, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in container.logs():
        assert time.monotonic() < deadline, f"{container.name} never printed {text!r}"
        time.sleep(0.05)


def test_create_start_kill_remove(client: Any, name: str) -> None:
    script = "trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done"
    container = client.containers.create(IMAGE, ["sh", "-c", script], name=name)
    assert container.status == "created"
    assert container.attrs["State"]["Status"] == "created" and container.attrs["State"]["Pid"] == 0
    container.start()
    _wait_log(container, b"ready\n")  # the trap is set
    container.reload()
    assert container.status == "running"
    container.kill(signal="SIGUSR1")
    assert container.wait(timeout=10) == {"Error": None, "StatusCode": 7}
    container.reload()
    assert container.status == "exited" and container.attrs["State"]["ExitCode"] == 7
    container.remove(v=True)
    with pytest.raises(derrors.NotFound):
        container.reload()


def test_start_again_right_after_exit(client: Any, name: str) -> None:
    container = client.containers.run(IMAGE, ["echo", "again"], name=name, detach=True)
    failures = []
    for _ in range(15):  # a start right behind wait: the exit's clean-up must be over by then
        assert container.wait(timeout=10)["StatusCode"] == 0
        try:
            container.start()
        except derrors.APIError as exc:
            failures.append(exc.explanation)
            time.sleep(1)
            container.start()
    assert container.wait(timeout=10)["StatusCode"] == 0
    assert not failures, failures
    assert container.logs() == b"again\n" * 16


def test_attach_then_start_exited_container(client: Any, name: str) -> None:
    container = client.containers.run(IMAGE, ["sh", "-c", "sleep 0.3; echo run"], name=name, detach=True)
    assert container.wait(timeout=10)["StatusCode"] == 0
    sock = container.attach_socket(params={"stdout": 1, "stderr": 1, "stream": 1})
    try:
        container.start()  # `docker start -a` does this: the new run's output comes on the attach
        assert _read_frames(sock._sock, b"run\n")[1] == b"run\n"
    finally:
        sock.close()


def test_logs_follow_while_writing(client: Any, name: str) -> None:
    container = client.containers.run(
        IMAGE, ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; echo e$i >&2; sleep 0.2; done"],
        name=name, detach=True,
    )  # fmt: skip
    lines = []
    started = time.monotonic()
    first_at = None
    for chunk in container.logs(stream=True, follow=True, stderr=False):
        if first_at is None:
            first_at = time.monotonic() - started
        lines.append(chunk)
    text = b"".join(lines)
    assert text == b"".join(b"line%d\n" % i for i in range(1, 6))
    assert first_at is not None and first_at < 0.8  # the first line arrived while the container still ran
    assert container.wait(timeout=10)["StatusCode"] == 0
    assert container.logs(stdout=False, stderr=True) == b"e1\ne2\ne3\ne4\ne5\n"
    assert container.logs(tail=2) == b"line5\ne5\n"
    stamped = container.logs(timestamps=True, stderr=False).splitlines()
    assert len(stamped) == 5 and all(line.split(b" ", 1)[0].endswith(b"Z") for line in stamped)


def test_logs_tail_counts_entries_of_both_streams(client: Any, name: str) -> None:
    """moby reads the last ``tail`` entries of the log, then drops the streams not asked for."""
    container = client.containers.run(IMAGE, ["sh", "-c", "echo o1; echo o2; sleep 0.1; echo e1 >&2"],
                                      name=name, detach=True)  # fmt: skip
    assert container.wait(timeout=10)["StatusCode"] == 0
    assert container.logs(tail=2) == b"o2\ne1\n"
    assert container.logs(tail=1, stderr=False) == b""


# ---- exec -----------------------------------------------------------------------------------------------


@pytest.fixture
def sleeper(client: Any, name: str) -> Any:
    return client.containers.run(IMAGE, ["sleep", "300"], name=name, detach=True, environment={"FROM": "ctr"},
                                 working_dir="/tmp")  # fmt: skip


def test_exec_run(sleeper: Any) -> None:
    result = sleeper.exec_run(
        ["sh", "-c", "echo hello; echo $FROM $EXTRA; pwd; id -u"], environment={"EXTRA": "x"}
    )
    assert result.exit_code == 0
    assert result.output == b"hello\nctr x\n/tmp\n0\n"
    assert sleeper.exec_run(["sh", "-c", "exit 5"]).exit_code == 5
    assert sleeper.exec_run(["pwd"], workdir="/etc").output == b"/etc\n"
    assert sleeper.exec_run(["sh", "-c", "id -u; id -g"], user="65534:65534").output == b"65534\n65534\n"
    assert sleeper.exec_run(["id", "-u"], user="nobody").output == b"65534\n"
    assert sleeper.exec_run(["env"], environment=["A=1", "B=two words"]).output.count(b"B=two words\n") == 1

    code, (out, err) = sleeper.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    assert (code, out, err) == (0, b"o\n", b"e\n")
    code, out = sleeper.exec_run(["sh", "-c", "echo o; echo e >&2"], stderr=False)
    assert out == b"o\n"

    code, chunks = sleeper.exec_run(["sh", "-c", "for i in 1 2 3; do echo s$i; sleep 0.1; done"], stream=True)
    assert code is None
    assert b"".join(chunks) == b"s1\ns2\ns3\n"

    code, out = sleeper.exec_run(["sh", "-c", "tty; echo $TERM"], tty=True)
    assert code == 0 and out.replace(b"\r\n", b"\n").split(b"\n")[1] == b"xterm"


def _raw_exec_start(ketchd: Ketchd, exec_id: str, body: bytes) -> tuple[bytes, bytes]:
    """``POST /exec/{id}/start`` by hand, read to the end: (status line and headers, stream bytes)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(ketchd.socket))
        sock.sendall(b"POST /v1.41/exec/%s/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
                     b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s"
                     % (exec_id.encode(), len(body), body))  # fmt: skip
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_exec_start_failures_come_on_the_stream(ketchd: Ketchd, api: Any, sleeper: Any) -> None:
    """As in moby: past the hijack, a start that fails writes its error as output; the exit code is 126."""
    message = b"unable to find user nosuchuser: no matching entries in passwd file\r\n"
    created = api.exec_create(sleeper.id, ["id"], user="nosuchuser")
    head, rest = _raw_exec_start(ketchd, created["Id"], b'{"Detach": false, "Tty": false}')
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert rest == FRAME.pack(1, len(message)) + message
    info = api.exec_inspect(created["Id"])
    assert (info["Running"], info["ExitCode"]) == (False, 126)
    head, rest = _raw_exec_start(ketchd, created["Id"], b'{"Detach": false, "Tty": true}')
    assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert rest == f"Error: Exec command {created['Id']} has already run\r\n".encode()  # a tty: no frames

    assert sleeper.exec_run(["id"], user="nosuchuser") == (126, message)
    missing = sleeper.exec_run(["/no/such/binary"])
    assert missing.exit_code == 126
    assert missing.output.startswith(b"OCI runtime exec failed: ") and missing.output.endswith(b"\r\n")
    assert b"/no/such/binary" in missing.output and b" level=error " not in missing.output
    assert sleeper.exec_run(["pwd"], workdir="/no/such/dir").exit_code == 126
    assert sleeper.exec_run(["id"], user="nosuchuser", tty=True) == (126, message)


def test_exec_low_level(api: Any, sleeper: Any) -> None:
    created = api.exec_create(sleeper.id, ["sh", "-c", "sleep 0.3; exit 4"])
    info = api.exec_inspect(created["Id"])
    assert info["Running"] is False and info["ExitCode"] is None and info["ContainerID"] == sleeper.id
    assert api.exec_start(created["Id"], detach=True) == ""
    assert api.exec_inspect(created["Id"])["Running"] is True
    deadline = time.monotonic() + 10
    while api.exec_inspect(created["Id"])["ExitCode"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = api.exec_inspect(created["Id"])
    assert info["Running"] is False and info["ExitCode"] == 4 and info["Pid"] > 0
    expected = {
        "tty": False,
        "entrypoint": "sh",
        "arguments": ["-c", "sleep 0.3; exit 4"],
        "privileged": False,
    }
    assert info["ProcessConfig"] == expected  # as dockerd 20.10 answers it: no "user" when there is none
    with pytest.raises(derrors.APIError) as detached_again:
        api.exec_start(created["Id"], detach=True)
    assert detached_again.value.status_code == 409
    assert "has already run" in str(detached_again.value)
    assert (
        api.exec_start(created["Id"]) == f"Error: Exec command {created['Id']} has already run\r\n".encode()
    )
    with pytest.raises(derrors.NotFound):
        api.exec_inspect("0" * 64)
    with pytest.raises(derrors.NotFound):
        api.exec_create("no-such-container", ["true"])
    with pytest.raises(derrors.APIError) as empty:
        api.exec_create(sleeper.id, [])
    assert empty.value.status_code == 400


def test_exec_stdin_socket_and_resize(api: Any, sleeper: Any) -> None:
    created = api.exec_create(sleeper.id, ["cat"], stdin=True)
    sock = api.exec_start(created["Id"], socket=True)
    raw = sock._sock
    try:
        raw.sendall(b"to exec\n")
        assert _read_frames(raw, b"to exec\n")[1] == b"to exec\n"
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(10)
        assert raw.recv(100) == b""  # cat saw the end of its stdin and exited
    finally:
        sock.close()
    deadline = time.monotonic() + 10
    while api.exec_inspect(created["Id"])["ExitCode"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    sized = api.exec_create(sleeper.id, ["sh", "-c", "sleep 0.5; stty size"], tty=True, user="nobody")
    assert api.exec_inspect(sized["Id"])["ProcessConfig"]["user"] == "nobody"
    stream = api.exec_start(sized["Id"], tty=True, stream=True)
    # sent before the process may even run, as the docker CLI does: it waits for the process; 200 as dockerd
    resized = api._post(api._url("/exec/{0}/resize", sized["Id"]), params={"h": 33, "w": 77})
    assert resized.status_code == 200, resized.text
    assert b"".join(stream).strip() == b"33 77"


def test_exec_refused_unless_running(client: Any, api: Any, sleeper: Any) -> None:
    early = api.exec_create(sleeper.id, ["true"])
    sleeper.pause()
    try:
        with pytest.raises(derrors.APIError) as paused:
            sleeper.exec_run(["true"])
        assert paused.value.status_code == 409 and "is paused" in str(paused.value)
        with pytest.raises(derrors.APIError) as paused_start:
            api.exec_start(early["Id"])
        assert paused_start.value.status_code == 409
    finally:
        sleeper.unpause()
    assert api.exec_start(early["Id"]) == b""  # a start refused with a status did not use the exec up
    assert _exit_code_soon(api, early["Id"]) == 0
    sleeper.kill()
    sleeper.wait(timeout=10)
    with pytest.raises(derrors.APIError) as stopped:
        sleeper.exec_run(["true"])
    assert stopped.value.status_code == 409 and "is not running" in str(stopped.value)


def _exit_code_soon(api: Any, exec_id: str) -> int | None:
    deadline = time.monotonic() + 10
    while (code := api.exec_inspect(exec_id)["ExitCode"]) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return code  # type: ignore[no-any-return]


def test_exec_privileged(sleeper: Any) -> None:
    plain = sleeper.exec_run(["sh", "-c", "grep CapEff /proc/self/status"])
    privileged = sleeper.exec_run(["sh", "-c", "grep CapEff /proc/self/status"], privileged=True)
    assert plain.exit_code == 0 and privileged.exit_code == 0, privileged.output
    assert int(privileged.output.split()[1], 16) > int(plain.output.split()[1], 16)


# ---- attach ---------------------------------------------------------------------------------------------


def test_attach_socket_stdin_roundtrip(client: Any, api: Any, name: str) -> None:
    container = client.containers.create(IMAGE, ["cat"], name=name, stdin_open=True)
    sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    raw = sock._sock  # docker-py hands back the SocketIO of the hijacked connection
    try:
        container.start()
        raw.sendall(b"ping one\n")
        assert _read_frames(raw, b"ping one\n")[1] == b"ping one\n"
        raw.sendall(b"ping two\n")
        assert _read_frames(raw, b"ping two\n")[1] == b"ping two\n"
        raw.shutdown(socket.SHUT_WR)  # end of stdin: cat exits
        assert container.wait(timeout=10)["StatusCode"] == 0
    finally:
        sock.close()
    assert container.logs() == b"ping one\nping two\n"


def test_attach_low_level_logs_stream(api: Any, client: Any, name: str) -> None:
    container = client.containers.create(IMAGE, ["sh", "-c", "sleep 0.3; echo a; echo b >&2"], name=name)
    stream = api.attach(container.id, stdout=True, stderr=True, stream=True, demux=True)
    container.start()
    got = {"out": b"", "err": b""}
    for out, err in stream:
        got["out"] += out or b""
        got["err"] += err or b""
    assert got == {"out": b"a\n", "err": b"b\n"}


# ---- list and filters -----------------------------------------------------------------------------------


def test_list_filters(client: Any, name: str) -> None:
    running = client.containers.run(
        IMAGE, ["sleep", "300"], name=name, detach=True, labels={"dp-list": "run"}
    )
    exited = client.containers.run(IMAGE, ["true"], name=name + "-x", detach=True, labels={"dp-list": "done"})
    try:
        assert exited.wait(timeout=10)["StatusCode"] == 0
        assert [c.id for c in client.containers.list(filters={"name": name})] == [running.id]
        assert name + "-x" not in {c.name for c in client.containers.list()}  # running only, without all
        assert _names(client, label="dp-list") == {name, name + "-x"}
        assert _names(client, label="dp-list=done") == {name + "-x"}
        assert name + "-x" in _names(client, status="exited") and name not in _names(client, status="exited")
        assert _names(client, id=running.id[:12]) == {name}
        assert {name, name + "-x"} <= _names(client, ancestor=IMAGE)
        assert _names(client, label="dp-list", exited=0) == {name + "-x"}
        listed = client.containers.list(all=True, filters={"label": "dp-list"}, sparse=True)
        assert {c.attrs["Labels"]["dp-list"] for c in listed} == {"run", "done"}
        assert len(client.containers.list(all=True, limit=1)) == 1
        with pytest.raises(derrors.APIError) as bad:
            client.containers.list(filters={"nonsense": "x"})
        assert bad.value.status_code == 400
    finally:
        exited.remove(force=True)


# ---- errors ---------------------------------------------------------------------------------------------


def test_errors(client: Any, api: Any, name: str) -> None:
    with pytest.raises(derrors.NotFound) as missing:
        client.containers.get("no-such-container-" + name)
    assert missing.value.status_code == 404
    with pytest.raises(derrors.NotFound):
        api.start("no-such-container-" + name)
    with pytest.raises(derrors.ImageNotFound):
        client.containers.create("ketch-missing-image:none", ["true"], name=name)
    with pytest.raises(derrors.ImageNotFound):
        api.create_container("ketch-missing-image:none", ["true"])
    assert name not in _names(client)

    container = client.containers.run(IMAGE, ["sleep", "300"], name=name, detach=True)
    with pytest.raises(derrors.APIError) as running:
        container.remove()
    assert running.value.status_code == 409
    with pytest.raises(derrors.APIError) as conflict:
        client.containers.create(IMAGE, ["true"], name=name)
    assert conflict.value.status_code == 409 and "already in use" in str(conflict.value)
    with pytest.raises(derrors.APIError) as started:
        api.unpause(container.id)
    assert started.value.status_code == 409

    before = {c.id for c in client.containers.list(all=True)}
    with pytest.raises(derrors.APIError) as small:
        client.containers.create(IMAGE, ["true"], mem_limit="1k")
    assert small.value.status_code == 400 and "Minimum memory limit" in str(small.value)
    with pytest.raises(derrors.APIError) as bad_signal:
        container.kill(signal="SIGNOPE")
    assert bad_signal.value.status_code == 400

    url = api._url("/containers/create")
    answer = api._post(
        url, data=b'{"Image": "busybox:ketch", "Cmd": ["true"', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert "message" in answer.json()
    answer = api._post(url, data=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert {c.id for c in client.containers.list(all=True)} == before


# ---- images ---------------------------------------------------------------------------------------------


def test_images_save_load_tag_remove(client: Any, api: Any) -> None:
    image = client.images.get(IMAGE)
    assert IMAGE in image.tags and image.id.startswith("sha256:")
    assert image.id in {i.id for i in client.images.list()}
    assert [i.id for i in client.images.list(name="busybox")] == [image.id]

    tag = "dp-" + uuid.uuid4().hex[:8]
    assert image.tag(f"dockerpy/{tag}", "v1") is True
    try:
        assert client.images.get(f"dockerpy/{tag}:v1").id == image.id
        assert {f"dockerpy/{tag}:v1", IMAGE} <= set(client.images.get(image.id).tags)
        assert [i.id for i in client.images.list(filters={"reference": f"dockerpy/{tag}"})] == [image.id]

        archive = b"".join(client.images.get(f"dockerpy/{tag}:v1").save(named=f"dockerpy/{tag}:v1"))
        assert len(archive) > 10000
        client.images.remove(f"dockerpy/{tag}:v1")
        with pytest.raises(derrors.ImageNotFound):
            client.images.get(f"dockerpy/{tag}:v1")
        loaded = client.images.load(archive)
        assert [i.id for i in loaded] == [image.id]
        assert f"dockerpy/{tag}:v1" in loaded[0].tags

        raw = b"".join(api.get_image(image.id))
        assert raw[257:262] == b"ustar"  # a tar archive
    finally:
        with contextlib.suppress(derrors.ImageNotFound):
            client.images.remove(f"dockerpy/{tag}:v1")
    with pytest.raises(derrors.ImageNotFound):
        client.images.get("ketch-missing-image:none")
    with pytest.raises(derrors.ImageNotFound):
        client.images.remove("ketch-missing-image:none")


@pytest.fixture(scope="module")
def registry(busybox_rootfs: Path) -> Iterator[str]:
    why = reg.missing_tools()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="ketch-dp-registry-"))
    try:
        try:
            registry = reg.Registry(work / "registry").start()
        except RuntimeError as exc:
            pytest.skip(str(exc))
        try:
            reg.make_oci_layout(work / "layout", busybox_rootfs, "t1")
            policy = reg.write_policy(work / "policy.json")
            source, target = f"oci:{work / 'layout'}:t1", f"docker://{registry.address}/dp/bb:t1"
            proc = reg.skopeo("copy", "--dest-tls-verify=false", source, target, policy=policy)
            assert proc.returncode == 0, proc.stderr
            yield registry.address
        finally:
            registry.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_images_pull_and_push(client: Any, api: Any, registry: str) -> None:
    pulled = client.images.pull(f"{registry}/dp/bb", tag="t1")
    assert f"{registry}/dp/bb:t1" in pulled.tags
    digest = pulled.attrs["RepoDigests"][0]
    assert digest.startswith(f"{registry}/dp/bb@sha256:")

    target = f"{registry}/dp/pushed"
    assert pulled.tag(target, "p1")
    lines = list(client.images.push(target, tag="p1", stream=True, decode=True))
    assert not [line for line in lines if "error" in line], lines
    assert any(line.get("aux", {}).get("Digest", "").startswith("sha256:") for line in lines), lines

    client.images.remove(f"{target}:p1")
    again = client.images.pull(target, tag="p1")
    assert again.id == pulled.id

    events = list(api.pull(f"{registry}/dp/bb", tag="t1", stream=True, decode=True))
    assert "Image is up to date" in events[-1]["status"]
    with pytest.raises(derrors.NotFound):
        client.images.pull(f"{registry}/dp/nosuch", tag="t1")
    for ref in (f"{target}:p1", f"{registry}/dp/bb:t1"):
        client.images.remove(ref)
