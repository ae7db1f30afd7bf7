"""``python -m flanet``: the same entry point as the ``flanet`` command."""

import sys

from flanet.cli import main

sys.exit(main())
