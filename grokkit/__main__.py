"""``python -m grokkit``: the same as the ``grokkit`` command (used by the sweep executor so that
each run uses the executor's own Python environment)."""

import sys

from grokkit.cli import main

sys.exit(main())
