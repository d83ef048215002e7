"""The WAL's fsync policy, parsed from its configuration text.

``always``       a write is acknowledged after an fdatasync that began after it
                 was written (group commit: concurrent writers share one).
``interval:MS``  a background thread fdatasyncs every MS milliseconds; writes
                 return at once (up to MS ms of acknowledged writes can be lost).
``never``        the OS decides when data reaches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from proximadb.errors import ValidationError

FsyncMode = Literal["always", "interval", "never"]


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    mode: FsyncMode
    interval_ms: int = 0

    @classmethod
    def parse(cls, text: str | FsyncPolicy) -> FsyncPolicy:
        if isinstance(text, FsyncPolicy):
            return text
        value = text.strip().lower()
        if value in ("always", "never"):
            return cls(value)  # type: ignore[arg-type]
        if value.startswith("interval:"):
            try:
                ms = int(value.split(":", 1)[1])
            except ValueError:
                ms = 0
            if ms > 0:
                return cls("interval", ms)
        raise ValidationError(f"fsync policy {text!r} is not one of: always, interval:<ms> (ms > 0), never")

    def __str__(self) -> str:
        return f"interval:{self.interval_ms}" if self.mode == "interval" else self.mode
