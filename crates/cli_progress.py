"""Progress for ``manage.py ingest_crate``: a live bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class CliProgress:
    def __init__(self, *, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.stage_name = ""
        self.message = ""
        self.percent = 0.0
        self.counters: dict[str, int] = {}
        self.started = time.monotonic()
        self.stage_started = self.started
        self.last_line = 0.0
        self.lock = threading.Lock()

    def stage(self, name: str, message: str, percent: float) -> None:
        with self.lock:
            self.stage_name, self.message = name, message
            self.percent = max(self.percent, percent)
            self.stage_started = time.monotonic()
            self._render(force=True)

    def update(self, *, percent: float | None = None, message: str | None = None, **counters: int) -> None:
        with self.lock:
            if percent is not None:
                self.percent = max(self.percent, percent)
            if message:
                self.message = message
            self.counters.update(counters)
            self._render(force=False)

    def check_cancelled(self) -> None:
        """The CLI is cancelled with Ctrl-C, which raises KeyboardInterrupt by itself."""

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def _rate_and_eta(self) -> str:
        done = self.counters.get("items_processed", 0)
        total = self.counters.get("items_found", 0)
        elapsed = time.monotonic() - self.stage_started
        # The embedding pass says its own progress and ETA in its message.
        if self.stage_name != "store" or done <= 0 or elapsed <= 0:
            return ""
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 and total >= done else 0
        return f" {done}/{total} items {rate:.0f}/s ETA {eta:.0f}s"

    def _render(self, *, force: bool) -> None:
        now = time.monotonic()
        if self.interactive:
            if not force and now - self.last_line < 0.1:
                return
            width = 30
            filled = int(width * self.percent / 100)
            bar = "#" * filled + "-" * (width - filled)
            line = f"\r[{bar}] {self.percent:5.1f}% {self.stage_name:<8} {self.message[:100]:<50}{self._rate_and_eta()}"
            self.stream.write(line[:200].ljust(120))
        else:
            if not force and now - self.last_line < 5:
                return
            self.stream.write(f"{self.percent:5.1f}% {self.stage_name}: {self.message}{self._rate_and_eta()}\n")
        self.stream.flush()
        self.last_line = now
