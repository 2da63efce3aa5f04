"""A program on a pseudo-terminal, driven as a person at a terminal drives it: typing a line,
pasting a block (wrapped in bracketed-paste marks when the program asked for them, as terminal
emulators do), reading what the screen shows."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")
BRACKETED_ON, BRACKETED_OFF = b"\x1b[?2004h", b"\x1b[?2004l"
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


class Terminal:
    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: str, cols: int = 200, rows: int = 50
    ) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: on the terminal, as after a login
            try:
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.raw = bytearray()
        self.status: int | None = None

    # -- the screen ------------------------------------------------------------------------------
    def _pump(self, timeout_s: float) -> None:
        readable, _, _ = select.select([self.fd], [], [], timeout_s)
        if readable:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # the program ended and closed the terminal
                data = b""
            if not data:
                self._reap(0)
                time.sleep(min(timeout_s, 0.05))
            self.raw += data

    def text(self, start: int = 0) -> str:
        """What was shown from byte ``start`` on, without colours and cursor moves."""
        return ANSI.sub(b"", bytes(self.raw[start:])).decode(errors="replace")

    def mark(self) -> int:
        return len(self.raw)

    def wait_for(self, pattern: str, timeout_s: float, start: int = 0) -> re.Match | None:
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(pattern, self.text(start))
            if found or time.monotonic() > deadline:
                return found
            self._pump(0.1)

    # -- the keyboard ----------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        """All of ``data``, reading the screen meanwhile so that neither side blocks."""
        view = memoryview(data)
        while view:
            readable, writable, _ = select.select([self.fd], [self.fd], [], 1.0)
            if readable:
                self._pump(0)
            if writable:
                view = view[os.write(self.fd, view[:1024]) :]

    def type(self, line: str) -> None:
        self._write(line.encode() + b"\n")

    def paste(self, text: str) -> None:
        data = text.encode()
        on, off = self.raw.rfind(BRACKETED_ON), self.raw.rfind(BRACKETED_OFF)
        if on > off:  # the program enabled bracketed paste: a terminal marks the paste
            data = PASTE_START + data + PASTE_END
        self._write(data)

    # -- the end ---------------------------------------------------------------------------------
    def _reap(self, flags: int) -> None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)

    def wait_exit(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.status is None and time.monotonic() < deadline:
            self._pump(0.1)
            self._reap(os.WNOHANG)
        return self.status

    def close(self) -> None:
        """End the program if it is still running (SIGTERM: it tears its layout down)."""
        if self.status is None:
            os.kill(self.pid, signal.SIGTERM)
            if self.wait_exit(60) is None:
                os.kill(self.pid, signal.SIGKILL)
                self.wait_exit(10)
        os.close(self.fd)
