"""Private broker instances started by tests (Mosquitto, NATS) so a test can stop and
restart its peer, or require passwords, without touching the machine's shared services."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

from connector_helpers import free_port, wait_for


def port_open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Process:
    """A broker process on 127.0.0.1:port; stop() and start() keep port and data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    async def start(self) -> Process:
        log = (self.folder / "broker.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log)
        await wait_for(lambda: port_open(self.port), 20, f"{self.command()[0]} on port {self.port}")
        return self

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 20)
            self.proc = None


class Mosquitto(Process):
    USER, PASSWORD = "plant", "mqtt-pw-5"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        passwords = folder / "passwords"
        subprocess.run(
            ["mosquitto_passwd", "-b", "-c", str(passwords), self.USER, self.PASSWORD], check=True, capture_output=True
        )
        passwords.chmod(0o600)
        (folder / "mosquitto.conf").write_text(
            f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
        )

    def command(self) -> list[str]:
        return [shutil.which("mosquitto") or "mosquitto", "-c", str(self.folder / "mosquitto.conf")]


class Nats(Process):
    USER, PASSWORD = "plant", "nats-pw-8"

    def command(self) -> list[str]:
        return [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.folder / "js"),
            "--user",
            self.USER,
            "--pass",
            self.PASSWORD,
        ]
