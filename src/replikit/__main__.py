"""``python -m replikit``: the command-line interface (same as the ``replikit`` command)."""

import sys

from replikit.cli import main

sys.exit(main())
