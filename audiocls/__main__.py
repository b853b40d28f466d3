"""``python -m audiocls``: the ``audiocls`` command."""

import sys

from audiocls.cli import main

sys.exit(main())
