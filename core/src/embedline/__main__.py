"""``python -m embedline`` is the ``embedline`` command."""

import sys

from embedline.cli import main

sys.exit(main())
