"""`python -m pruna_hub.cli`: the same entry point as the `pruna-hub` console script."""

import sys

from pruna_hub.cli import main

sys.exit(main())
