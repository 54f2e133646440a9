"""A local RabbitMQ node for the tests, the benchmark and a laptop demo: Debian's rabbitmq-server,
installed with apt when missing, run as a process of ours in a directory of ours (its own epmd port,
AMQP port and data), stopped by its process group.

    .venv/bin/python -m scripts.rabbitmq var/rabbitmq      # runs one until Ctrl-C, prints its URL
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def ensure_installed() -> None:
    """apt-get install rabbitmq-server (with its Erlang) unless it is there; Debian's package."""
    if SERVER.exists() and shutil.which("epmd"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "rabbitmq-server"]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(command, env=env, capture_output=True, check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRabbitMQ:
    """One node; ``url`` is its AMQP URL once ``start`` returns."""

    def __init__(self, directory: str | Path, port: int | None = None):
        self.dir = Path(directory).resolve()
        self.port = port or _free_port()
        self.epmd_port = _free_port()
        self.dist_port = _free_port()
        self.name = f"recsys{self.port}@localhost"
        self._epmd: subprocess.Popen | None = None
        self._server: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict:
        d = self.dir
        return {**os.environ, "HOME": str(d), "ERL_EPMD_PORT": str(self.epmd_port), "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"), "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config")}

    def start(self, timeout: float = 60.0) -> LocalRabbitMQ:
        ensure_installed()
        self.dir.mkdir(parents=True, exist_ok=True)
        # durable messages are fsynced; a small disk-free limit so a test machine's disk does not block publishers
        (self.dir / "rabbitmq.conf").write_text("disk_free_limit.absolute = 50MB\nloopback_users = none\n")
        log = open(self.dir / "server.log", "ab")
        self._epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port)], stdout=log, stderr=log,
                                      start_new_session=True)
        self._server = subprocess.Popen([str(SERVER)], env=self._env(), stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited ({self._server.returncode}); see {self.dir / 'server.log'}")
            if self._accepts():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"rabbitmq-server did not open port {self.port} in {timeout:.0f} s")

    def _accepts(self) -> bool:
        import pika

        try:
            pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=1")).close()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        """End the node and its epmd: the process groups we started, nothing else."""
        # epmd ignores SIGTERM and holds nothing: it is killed outright, after the node
        for process, stop_signal in ((self._server, signal.SIGTERM), (self._epmd, signal.SIGKILL)):
            if process is None or process.poll() is not None:
                continue
            try:
                os.killpg(process.pid, stop_signal)
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._server = self._epmd = None

    def __enter__(self) -> LocalRabbitMQ:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    node = LocalRabbitMQ(argv[0] if argv else "var/rabbitmq", port=int(argv[1]) if len(argv) > 1 else 5672).start()
    print(f"RabbitMQ at {node.url} (Ctrl-C stops it)", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
