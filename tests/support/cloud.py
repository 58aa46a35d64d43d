"""Helpers for the cloud client tests: follow a job to its end, check a process is gone."""

import shutil
import subprocess
import time
from pathlib import Path

HELLO_JAVA = (
    "package ai.trainyard;\n"
    "public class Hello { public static void main(String[] args) {\n"
    '  System.out.println("hello from the JVM " + String.join(",", args)); } }\n'
)


def follow(client, handle: dict, timeout: float = 60) -> tuple[list[str], str, dict]:
    """Poll `client.status(handle)` until finished: (states seen in order, final state, result)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state, finished, result = client.status(handle)
        if not seen or seen[-1] != state:
            seen.append(state)
        if finished:
            return seen, state, result
        time.sleep(0.1)
    raise AssertionError(f"the job did not finish in {timeout}s; states seen: {seen}")


def wait_until(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def process_exists(pid: int) -> bool:
    """Whether `pid` is still a live process (a zombie awaiting its reaper has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The state follows the parenthesised command name, which may contain spaces.
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def closed_port_url() -> str:
    """A loopback URL on which nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def hello_jar(folder: Path) -> bytes:
    """A JAR whose main class ai.trainyard.Hello prints its arguments, built with the JDK."""
    assert shutil.which("javac") and shutil.which("jar"), (
        "javac and jar are missing: install openjdk-17-jdk-headless "
        "(scripts/test-system-deps.sh does)"
    )
    source = folder / "src" / "ai" / "trainyard" / "Hello.java"
    source.parent.mkdir(parents=True)
    source.write_text(HELLO_JAVA)
    classes = folder / "classes"
    subprocess.run(["javac", "-d", str(classes), str(source)], check=True)
    jar = folder / "hello.jar"
    subprocess.run(["jar", "cf", str(jar), "-C", str(classes), "."], check=True)
    return jar.read_bytes()
