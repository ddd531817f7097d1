"""The audit log: who started, cancelled, sent input to or read what, one JSON line each.

Lines go to the `nanobrain.audit` logger and, when a file is given, are appended to it (created
owner-only, since it names users and sessions).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .auth import Principal

log = logging.getLogger("nanobrain.audit")


class AuditLog:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(fd)

    def record(self, principal: Principal | None, action: str, target: str, **details: Any) -> None:
        entry = {
            "time": round(time.time(), 3),
            "who": principal.name if principal else None,
            "kind": principal.kind if principal else None,
            "action": action,
            "target": target,
            **details,
        }
        line = json.dumps(entry, default=str, ensure_ascii=False)
        log.info(line)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
