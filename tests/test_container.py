"""The repository's Dockerfile, built and run for real with buildah and podman.

No registry of container images is needed. The base image is made here: debootstrap writes a
Debian bookworm root filesystem with python3 and python3-venv, podman imports it as a local
image, and the Dockerfile is built on it with ``--build-arg PYTHON_IMAGE=<that image>``. pip in
the build still fetches asgiws's dependencies from the package index.

Everything lives in a private image store under ``.cache/containers/`` (git-ignored; delete it to
start over), never in the machine's own: the base image is made once and kept, and the build uses
buildah's layer cache, so only the first run costs minutes and later ones a few seconds.

Needs root, Linux and the Debian packages buildah, podman and debootstrap (runc too where crun
cannot run containers, as under cgroups v1); without them the tests are skipped with the reason,
except when ``CI`` is set, where that is a failure.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from lines import OutputLines
from ports import free_port

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / ".cache" / "containers"

IMAGE = "localhost/asgiws-test:latest"
# examples/docker/: a FastAPI app and its requirements in an image built FROM the one above.
EXAMPLE = ROOT / "examples" / "docker"
FASTAPI_IMAGE = "localhost/asgiws-test-fastapi:latest"
BUILD_STAGE_IMAGE = "localhost/asgiws-test:build-stage"
BASE_REPOSITORY = "localhost/asgiws-test-base"
SUITE = "bookworm"
# What the Dockerfile asks of its base: python3 with venv (and pip, as python:3.X images have).
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
# Debian's place for a machine's own certificate authorities (update-ca-certificates(8)).
LOCAL_CA_DIR = Path("/usr/local/share/ca-certificates")

DEADLINE_S = 30.0  # one step of a running container: start, answer, stop
STOP_WITHIN_S = 5.0  # SIGTERM to exit, with a WebSocket open (the kill comes at 10 s)
DEBOOTSTRAP_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 600.0

# Cold: debootstrap and the first build; every test's own waits are bounded far below this.
pytestmark = [
    pytest.mark.container,
    pytest.mark.timeout(DEBOOTSTRAP_TIMEOUT_S + BUILD_TIMEOUT_S + 300),
]


def missing_requirements() -> list[str]:
    if not sys.platform.startswith("linux"):
        return ["Linux"]
    missing = [tool for tool in ("buildah", "podman", "debootstrap") if not shutil.which(tool)]
    if missing:
        missing = [f"{' '.join(missing)} (apt-get install {' '.join(missing)})"]
    if os.geteuid() != 0:
        missing.append("root (the image store and debootstrap need it)")
    return missing


@pytest.fixture(scope="module", autouse=True)
def requirements() -> None:
    missing = missing_requirements()
    if missing:
        reason = f"the container tests need {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set: a missing tool is a failure")
        pytest.skip(reason)


# -- the private image store ---------------------------------------------------------------------


def storage_args() -> list[str]:
    """The global options that point buildah and podman at the store under .cache/."""
    with open("/proc/filesystems") as filesystems:
        overlay = any(line.split()[-1:] == ["overlay"] for line in filesystems)
    driver = "overlay" if overlay else "vfs"
    return ["--root", str(STORE / "storage"), "--runroot", str(STORE / "run"),
            "--storage-driver", driver]  # fmt: skip


def podman_command(*args: str) -> list[str]:
    command = ["podman", *storage_args(), "--tmpdir", str(STORE / "tmp")]
    # cgroupfs and a file of events work with or without systemd running.
    command += ["--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    if shutil.which("runc"):
        # crun refuses to run under a hybrid cgroup hierarchy (v1 controllers plus a v2 one);
        # runc copes with v1, hybrid and v2 alike.
        command += ["--runtime", "runc"]
    return [*command, *args]


def buildah_command(*args: str) -> list[str]:
    return ["buildah", *storage_args(), *args]


def run(
    command: list[str],
    *,
    timeout: float = DEADLINE_S,
    check: bool = True,
    stdin: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``command`` to completion within ``timeout``; with ``check``, an error shows its output."""
    result = subprocess.run(
        command, stdin=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(command)}\nexited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


# -- the base image: Debian and python3, made with debootstrap -----------------------------------


def apt_mirror() -> str | None:
    """The Debian archive this machine's apt uses for SUITE, or None for debootstrap's default."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822 stanzas: "URIs: ..." and "Suites: ..."
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.MULTILINE))
                if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                    return str(fields["URIs"].split()[0])
        elif path.suffix == ".list" or path.name == "sources.list":
            for line in text.splitlines():  # deb [options] URI SUITE COMPONENTS...
                words = re.sub(r"\[[^]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    return None


def local_cas() -> list[Path]:
    return sorted(LOCAL_CA_DIR.rglob("*.crt")) if LOCAL_CA_DIR.is_dir() else []


def base_image() -> str:
    """The base image's name, made if the store does not hold it yet.

    Its tag hashes what goes into it, so a change of packages or of local CAs makes a new one.
    """
    digest = hashlib.sha256(repr((SUITE, BASE_PACKAGES)).encode())
    for ca in local_cas():
        digest.update(ca.read_bytes())
    name = f"{BASE_REPOSITORY}:{SUITE}-{digest.hexdigest()[:12]}"
    if run(podman_command("image", "exists", name), check=False).returncode == 0:
        return name
    STORE.mkdir(parents=True, exist_ok=True)
    rootfs = STORE / f"rootfs-{os.getpid()}"
    try:
        mirror = apt_mirror()
        debootstrap = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        run([*debootstrap, SUITE, str(rootfs), *([mirror] if mirror else [])],
            timeout=DEBOOTSTRAP_TIMEOUT_S)  # fmt: skip
        # The machine may reach the package index through a TLS-inspecting proxy whose CA it
        # trusts; a base image made inside that organisation would trust it too.
        for ca in local_cas():
            target = rootfs / ca.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ca, target)
        if local_cas():
            run(["chroot", str(rootfs), "update-ca-certificates"])
        # What a slim image leaves out: downloaded packages, package lists, docs.
        leftovers = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                     "usr/share/man", "usr/share/locale")  # fmt: skip
        for leftover in leftovers:
            for entry in (rootfs / leftover).glob("*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
            # The image configuration of the official python images, as far as it matters here.
            changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "ENV LANG=C.UTF-8", 'CMD ["python3"]']  # fmt: skip
            options = [option for change in changes for option in ("--change", change)]
            run(podman_command("import", *options, "-", name), stdin=tar.stdout,
                timeout=BUILD_TIMEOUT_S)  # fmt: skip
            assert tar.wait(timeout=DEADLINE_S) == 0
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return name


@pytest.fixture(scope="module")
def image(requirements: None) -> str:
    """The Dockerfile built on the local base: made once per test run, from the layer cache."""
    base = base_image()
    # chroot: RUN steps need no runtime, cgroups or network namespace. docker format: OCI's
    # image configuration has no HEALTHCHECK.
    dockerfile = str(ROOT / "Dockerfile")
    common = ["bud", "--isolation", "chroot", "--format", "docker", "--layers",
              "--build-arg", f"PYTHON_IMAGE={base}", "--file", dockerfile]  # fmt: skip
    # The build stage gets a name too, so pruning untagged images keeps its cached layers.
    run(
        buildah_command(*common, "--target", "build", "--tag", BUILD_STAGE_IMAGE, str(ROOT)),
        timeout=BUILD_TIMEOUT_S,
    )
    run(buildah_command(*common, "--tag", IMAGE, str(ROOT)), timeout=BUILD_TIMEOUT_S)
    # Images that lost their tag to this build, so the store does not grow with every change.
    run(podman_command("image", "prune", "--force"), timeout=BUILD_TIMEOUT_S)
    return IMAGE


@pytest.fixture(scope="module")
def fastapi_image(image: str) -> str:
    """examples/docker/Dockerfile built FROM the image above, as its comments say."""
    build = ["bud", "--isolation", "chroot", "--format", "docker", "--layers",
             "--build-arg", f"ASGIWS_IMAGE={image}", "--file", str(EXAMPLE / "Dockerfile"),
             "--tag", FASTAPI_IMAGE, str(EXAMPLE)]  # fmt: skip
    run(buildah_command(*build), timeout=BUILD_TIMEOUT_S)
    run(podman_command("image", "prune", "--force"), timeout=BUILD_TIMEOUT_S)
    return FASTAPI_IMAGE


# -- running it ----------------------------------------------------------------------------------


def run_options() -> list[str]:
    """``podman run`` options for this machine's loopback and limits."""
    # Podman asks for more open files (1048576) than a process here may have, and raising a
    # limit takes CAP_SYS_RESOURCE: take this process's own. Given any --ulimit, podman also
    # drops its default of 32768 processes for a larger number, so that one is given as well.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if nproc == resource.RLIM_INFINITY or nproc > 32768:
        nproc = 32768
    options = ["--network", "host"]  # the tests reach the server on 127.0.0.1 only
    options += ["--ulimit", f"nofile={nofile[0]}:{nofile[1]}", "--ulimit", f"nproc={nproc}:{nproc}"]
    # No timer for the image's HEALTHCHECK (podman would ask systemd for one): the test of the
    # health check runs its command itself.
    options.append("--no-healthcheck")
    return options


class Container(OutputLines):
    """``podman run --rm IMAGE ARGS`` in the foreground; its output is read line by line."""

    count = 0
    what = "the container"

    def __init__(self, image: str, *args: str, options: tuple[str, ...] = ()) -> None:
        Container.count += 1
        self.name = f"asgiws-test-{os.getpid()}-{Container.count}"
        self.process = subprocess.Popen(
            podman_command(
                "run", "--rm", "--name", self.name, *run_options(), *options, image, *args
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._read_lines()

    def pid(self) -> int:
        """The server's process id, as the host sees it."""
        inspect = run(podman_command("inspect", "--format", "{{.State.Pid}}", self.name))
        return int(inspect.stdout)

    def stop(self) -> None:
        """``podman stop``: SIGTERM (the image's STOPSIGNAL), then SIGKILL after 10 s."""
        run(podman_command("stop", "--time", "10", self.name), timeout=DEADLINE_S)

    def close(self) -> None:
        if self.process.poll() is None:
            run(podman_command("rm", "--force", "--time", "0", self.name), check=False)
        try:
            self.process.wait(timeout=DEADLINE_S)
        finally:
            self._reader.join(timeout=DEADLINE_S)
            assert self.process.stdout is not None
            self.process.stdout.close()


@pytest.fixture
def serve(image: str) -> Iterator[tuple[Container, int]]:
    """The image's default command, the demo, on a free port given as ASGIWS_PORT."""
    port = free_port()
    container = Container(image, options=("--env", f"ASGIWS_PORT={port}"))
    try:
        # The image's ASGIWS_HOST=0.0.0.0 and the environment's port, both taken.
        container.wait_for_line(rf"running on http://0\.0\.0\.0:{port}\b")
        yield container, port
    finally:
        container.close()


def http_get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


# -- the tests -----------------------------------------------------------------------------------


def test_demo_answers_http_and_websocket(serve: tuple[Container, int]) -> None:
    from websockets.sync.client import connect

    _, port = serve
    status, page = http_get(port, "/")
    assert status == 200
    assert "asgiws chat" in page
    url = f"ws://127.0.0.1:{port}/ws"
    with (
        connect(url, open_timeout=DEADLINE_S, close_timeout=DEADLINE_S) as alice,
        connect(url, open_timeout=DEADLINE_S, close_timeout=DEADLINE_S) as bob,
    ):
        alice.send("hello from alice")
        assert alice.recv(timeout=DEADLINE_S) == "hello from alice"
        assert bob.recv(timeout=DEADLINE_S) == "hello from alice"


def test_server_runs_as_non_root(serve: tuple[Container, int], image: str) -> None:
    container, _ = serve
    status = Path(f"/proc/{container.pid()}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.MULTILINE)
    assert uids is not None
    # Real, effective, saved and filesystem uid: all the image's unprivileged user.
    assert uids[1].split() == ["10001"] * 4
    user = run(podman_command("image", "inspect", "--format", "{{.Config.User}}", image))
    assert user.stdout.strip() == "10001:10001"
    # Nor can it change its own code or the app's directory.
    for directory in ("/opt/asgiws", "/app"):
        probe = f"open('{directory}/probe', 'w')"
        write = run(podman_command("exec", container.name, "python3", "-c", probe), check=False)
        assert "PermissionError" in write.stderr, (directory, write.stderr)


def test_healthcheck_follows_asgiws_port(serve: tuple[Container, int], image: str) -> None:
    # The image's HEALTHCHECK command, run in the container as podman or docker would run it.
    inspect = run(
        podman_command("image", "inspect", "--format", "{{json .Config.Healthcheck}}", image)
    )
    healthcheck = json.loads(inspect.stdout)
    kind, *command = healthcheck["Test"]
    assert kind == "CMD"
    container, _ = serve
    healthy = run(podman_command("exec", container.name, *command), check=False)
    assert healthy.returncode == 0, healthy.stderr
    # The same with ASGIWS_PORT naming a port nothing listens on: unhealthy.
    elsewhere = run(
        podman_command("exec", "--env", f"ASGIWS_PORT={free_port()}", container.name, *command),
        check=False,
    )
    assert elsewhere.returncode != 0
    assert "ConnectionRefusedError" in elsewhere.stderr


def test_stop_closes_websockets_and_exits_0(serve: tuple[Container, int]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    container, port = serve
    with connect(
        f"ws://127.0.0.1:{port}/ws", open_timeout=DEADLINE_S, close_timeout=DEADLINE_S
    ) as client:
        client.send("before stop")
        assert client.recv(timeout=DEADLINE_S) == "before stop"
        started = time.monotonic()
        container.stop()
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=DEADLINE_S)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001  # Going Away, the default --ws-shutdown-code
    assert container.process.wait(timeout=DEADLINE_S) == 0, container.lines
    elapsed = time.monotonic() - started
    assert elapsed < STOP_WITHIN_S, f"podman stop took {elapsed:.1f} s"
    container.wait_for_line(r"received SIGTERM")


def test_own_app_from_the_working_directory(image: str, tmp_path: Path) -> None:
    # The image's WORKDIR is /app and --app-dir defaults to it: mount an app there and name it
    # after the image; options follow it on the command line.
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    app_dir.chmod(0o755)  # readable by the image's unprivileged user
    (app_dir / "myapp.py").write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'hello from myapp'})\n"
    )
    port = free_port()
    options = ("--volume", f"{app_dir}:/app:ro")
    container = Container(image, "myapp:app", "--port", str(port), options=options)
    try:
        container.wait_for_line(rf"running on http://0\.0\.0\.0:{port}\b")
        assert http_get(port, "/") == (200, "hello from myapp")
    finally:
        container.close()


def test_unknown_app_exits_1_with_one_line(image: str) -> None:
    # Arguments after the image replace its CMD (the demo) and go to asgiws, the ENTRYPOINT.
    result = run(podman_command("run", "--rm", *run_options(), image, "nosuch:app"), check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "asgiws: error: could not import module 'nosuch': No module named 'nosuch'"
    ]
    assert result.stdout == ""


def test_bad_environment_value_exits_2(image: str) -> None:
    result = run(
        podman_command("run", "--rm", *run_options(), "--env", "ASGIWS_PORT=ten", image),
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "asgiws: error: ASGIWS_PORT: invalid value 'ten' (expected a whole number, from 0 to 65535)"
    )
    assert "Traceback" not in result.stderr


def test_derived_fastapi_image_serves_http_and_websocket(image: str, fastapi_image: str) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    # The derived image keeps the base's user, entrypoint and health check.
    def inspect(name: str, field: str) -> Any:
        found = run(podman_command("image", "inspect", "--format", f"{{{{json {field}}}}}", name))
        return json.loads(found.stdout)

    assert inspect(fastapi_image, ".Config.User") == "10001:10001"
    assert inspect(fastapi_image, ".Config.Entrypoint") == ["asgiws"]
    assert inspect(fastapi_image, ".Config.Cmd") == ["app:app"]
    healthcheck = inspect(fastapi_image, ".Config.Healthcheck")
    assert healthcheck["Test"][0] == "CMD"
    assert healthcheck == inspect(image, ".Config.Healthcheck")
    port = free_port()
    container = Container(fastapi_image, options=("--env", f"ASGIWS_PORT={port}"))
    try:
        container.wait_for_line(rf"running on http://0\.0\.0\.0:{port}\b")
        status, body = http_get(port, "/")
        assert status == 200, body
        assert json.loads(body) == {"hello": "from FastAPI on asgiws", "uid": 10001}
        assert http_get(port, "/healthz") == (200, '{"status":"ok"}')
        assert http_get(port, "/nowhere")[0] == 404
        url = f"ws://127.0.0.1:{port}/ws"
        with connect(url, open_timeout=DEADLINE_S, close_timeout=DEADLINE_S) as client:
            client.send("hello")
            assert client.recv(timeout=DEADLINE_S) == "echo: hello"
            client.send(json.dumps({"n": 1}))
            assert json.loads(client.recv(timeout=DEADLINE_S)) == {"echo": {"n": 1}}
            # FastAPI was installed as root: the server can read it but not change it.
            probe = "import fastapi, os; open(os.path.dirname(fastapi.__file__) + '/probe', 'w')"
            write = run(podman_command("exec", container.name, "python3", "-c", probe), check=False)
            assert "PermissionError" in write.stderr, write.stderr
            container.stop()
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=DEADLINE_S)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert container.process.wait(timeout=DEADLINE_S) == 0, container.lines
    finally:
        container.close()
