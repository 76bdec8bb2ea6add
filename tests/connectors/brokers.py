"""Private broker instances started by tests (Mosquitto, NATS) so a test can stop and
restart its peer, or require passwords, without touching the machine's shared services."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import asyncssh
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


PASSWORD = "supplier-pw-9"


class SftpServer:
    """asyncssh's SFTP server chrooted to a temporary folder, password or key login."""

    def __init__(self, root: Path, client_key: asyncssh.SSHKey) -> None:
        self.root = root
        self.port = free_port()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client_key
        self.acceptor: Any = None
        self.connections: list[asyncssh.SSHServerConnection] = []

    @property
    def host_key_line(self) -> str:
        return self.host_key.export_public_key().decode().strip()

    async def start(self) -> SftpServer:
        server = self

        class Auth(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                server.connections.append(conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                expected = server.client_key.export_public_key()
                return username == "mx01" and key.export_public_key() == expected

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == "mx01" and password == PASSWORD

        self.acceptor = await asyncssh.listen(
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            server_factory=Auth,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(self.root)),
        )
        return self

    async def stop(self) -> None:
        self.acceptor.close()
        await self.acceptor.wait_closed()
        for conn in self.connections:
            conn.abort()
        self.connections.clear()


class TlsMosquitto(Process):
    """Mosquitto with only a TLS listener (anonymous), optionally demanding a client
    certificate signed by the test CA."""

    def __init__(self, folder: Path, pki: Any, require_certificate: bool = False) -> None:
        super().__init__(folder)
        (folder / "mosquitto.conf").write_text(
            f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
            f"require_certificate {'true' if require_certificate else 'false'}\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
        )

    def command(self) -> list[str]:
        return [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.folder / "mosquitto.conf")]


class TlsNats(Process):
    """nats-server with JetStream and TLS required; with `verify`, clients must present a
    certificate signed by the test CA."""

    def __init__(self, folder: Path, pki: Any, verify: bool = False) -> None:
        super().__init__(folder)
        self.pki = pki
        self.verify = verify

    def command(self) -> list[str]:
        command = [
            shutil.which("nats-server") or "/usr/sbin/nats-server",
            "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.folder / "js"),
            "--tls", "--tlscert", str(self.pki.server_cert), "--tlskey", str(self.pki.server_key),
            "--tlscacert", str(self.pki.ca),
        ]
        return [*command, "--tlsverify"] if self.verify else command
