"""``python -m callweave run|show|check ...``."""

import sys

from callweave.cli import main

sys.exit(main())
