"""Process titles, so that ``ps`` shows what each storescpd process is doing."""

from __future__ import annotations

import setproctitle


def set_title(what: str) -> None:
    """Title the process ``storescpd: <what>``."""
    setproctitle.setproctitle(f"storescpd: {what}")
