"""Entry point of ``storescpd-dcmrecv`` (and ``python -m storescpd.dcmrecv``): storescpd's
engine behind DCMTK dcmrecv 3.6.7's command line (SPEC §12)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from storescpd.cli import main as serve_command_line
from storescpd.recvoptions import DCMRECV


def main(argv: Sequence[str] | None = None) -> int:
    """Run storescpd-dcmrecv; returns the process exit status."""
    return serve_command_line(argv, DCMRECV)


if __name__ == "__main__":
    sys.exit(main())
