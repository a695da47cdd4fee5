"""``python -m corelay.io`` runs the ``corelay-io`` command."""

import sys

from corelay.cli import main

sys.exit(main())
