"""Start, watch and stop a child server process: PID file, log file, readiness wait, clean stop."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Readiness = Callable[[], bool]


class StartupError(RuntimeError):
    """A server did not become ready; the message includes the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_port_block(size: int, host: str = "127.0.0.1") -> int:
    """The first of ``size`` consecutive free ports (for servers that open several listeners).

    The block is taken below the kernel's ephemeral range: a port there can be taken at any moment
    by an outgoing connection's local end, which a listener probe does not see (a weed start once
    failed that way in CI). Each port is checked by binding it, not by connecting to it.
    """
    low, high = _ephemeral_range()
    top = low - size if low - size > 20_000 else 65_000 - size
    bottom = 20_000 if top == low - size else high + 1
    for _ in range(200):
        start = random.randrange(bottom, top)
        if all(_bindable(host, port) for port in range(start, start + size)):
            return start
    raise RuntimeError(f"no block of {size} free ports found")


def _ephemeral_range() -> tuple[int, int]:
    with contextlib.suppress(OSError, ValueError):
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    return 32_768, 60_999


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return status != "Z"
    return True


@dataclass
class ManagedProcess:
    """One server binary. ``start`` returns once ``ready`` says so (or raises with the log tail)."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    ready: Readiness
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    startup_timeout: float = 60.0
    stop_timeout: float = 15.0
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def running_pid(self) -> int | None:
        """The PID recorded by a previous start, if that process still runs."""
        if not self.pid_file.exists():
            return None
        pid = int(self.pid_file.read_text().strip() or 0)
        return pid if pid and pid_alive(pid) else None

    def start(self, *, detach: bool = False, wait: bool = True) -> None:
        """Launch the process and (``wait``) return once it is ready; without ``wait``, call ``wait_ready``."""
        if (pid := self.running_pid()) is not None:
            raise StartupError(f"{self.name} already runs as PID {pid} (pid file {self.pid_file})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                # Own session: Ctrl-C in the terminal reaches the supervisor, which stops children in order.
                start_new_session=True,
            )
        self.pid_file.write_text(str(self.popen.pid))
        if wait:
            self.wait_ready()
        if detach:
            self.popen = None

    def wait_ready(self) -> None:
        """Return once ``ready`` says so; stop the process and raise (with the log tail) if it dies or times out."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise StartupError(
                    f"{self.name} exited with {self.popen.returncode}; log {self.log_file}:\n{tail(self.log_file)}"
                )
            if self.ready():
                return
            time.sleep(0.05)
        raise StartupError(
            f"{self.name} not ready after {self.startup_timeout:.0f}s; log {self.log_file}:\n{tail(self.log_file)}"
        )

    def exited(self) -> bool:
        """True if a process started by this object has ended on its own."""
        return self.popen is not None and self.popen.poll() is not None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the process, wait for it, and escalate to SIGKILL after ``stop_timeout``."""
        pid = self.popen.pid if self.popen is not None else self.running_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + self.stop_timeout
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                while self._alive(pid):
                    time.sleep(0.05)
        self.popen = None
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.stop(signal.SIGKILL)

    def _alive(self, pid: int) -> bool:
        if self.popen is not None and self.popen.pid == pid:
            return self.popen.poll() is None
        return pid_alive(pid)
