"""`python -m healthfm_desktop` is the `healthfm` console script."""

import sys

from healthfm_desktop.cli import main

sys.exit(main())
