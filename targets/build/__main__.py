"""python -m targets.build: the same as edge-build."""

import sys

from .cli import main

sys.exit(main())
