"""`python -m healthfm_desktop` is the `healthfm` console script."""

import multiprocessing
import sys

from healthfm_desktop.cli import main

if __name__ == "__main__":  # decode worker processes (spawn on Windows) import this module too
    multiprocessing.freeze_support()
    sys.exit(main())
