"""``python -m scanopt ...`` is the ``scanopt`` command (scanopt/cli.py)."""

import sys

from scanopt.cli import main

sys.exit(main())
