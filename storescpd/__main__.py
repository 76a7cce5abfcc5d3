"""Entry point for ``python -m storescpd``."""

import sys

from storescpd.cli import main

sys.exit(main())
