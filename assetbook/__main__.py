"""``python -m assetbook`` is the ``assetbook`` command."""

import sys

from assetbook.cli import main

sys.exit(main())
