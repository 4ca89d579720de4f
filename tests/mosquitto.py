"""A real Mosquitto broker for the sync tests (Debian's mosquitto; scripts/run-tests installs it): started on a
free port of 127.0.0.1 with a config of the test's own, stopped (or killed and started again empty) at will."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def mosquitto_binary() -> str | None:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def need_mosquitto() -> str:
    binary = mosquitto_binary()
    if binary is None:
        if os.environ.get("SMPPGUARD_REQUIRE_MOSQUITTO"):
            pytest.fail("mosquitto is not installed (scripts/run-tests installs it)")
        pytest.skip("mosquitto is not installed")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """`with Broker() as b:` … `b.url`; `b.restart()` kills it and starts it again with no memory (no persistence);
    `b.stop()` / `b.start()`. `extra` lines go into its config (e.g. "max_queued_messages 10")."""

    def __init__(self, extra: str = "", port: int | None = None, users: dict[str, str] | None = None,
                 acl: str = ""):
        """`users`: name -> password (then no anonymous client); `acl`: the ACL file's text."""
        self.binary = need_mosquitto()
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.conf = self.folder / "mosquitto.conf"
        auth = "allow_anonymous true\n"
        if users:
            pw = self.folder / "passwords"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
            subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-U", str(pw)],
                           check=True, capture_output=True)
            auth = f"allow_anonymous false\npassword_file {pw}\n"
        if acl:
            (self.folder / "acl").write_text(acl)
            auth += f"acl_file {self.folder / 'acl'}\n"
        # as root, mosquitto would drop to its own user, which cannot read the test's private temporary files
        run_as = f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        self.conf.write_text(f"{run_as}per_listener_settings false\n{auth}persistence false\nlog_dest stderr\n"
                             f"log_type error\nlog_type warning\nlistener {self.port} 127.0.0.1\n{extra}\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {(self.folder / 'log').read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        """Killed, and started again empty: every session, queued message and retained message is gone."""
        self.stop(kill=True)
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class Watcher:
    """A plain MQTT client (paho, what aiomqtt wraps) in the test's own thread: publishes raw payloads and keeps
    what arrives on the topics it subscribes to."""

    def __init__(self, broker: Broker, *topics: str):
        import paho.mqtt.client as mqtt

        self.received: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{free_port()}")
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", broker.port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def on(self, prefix: str) -> list[bytes]:
        return [p for t, p in list(self.received) if t.startswith(prefix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
