"""python -m nodes.sandbox: serve the emulator (see server.py for the options)."""

import sys

from .cli import main

sys.exit(main())
