"""Entry point of the frozen bundle: the same `healthfm` command line as the console script."""

import multiprocessing
import sys

from healthfm_desktop.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # worker processes of a frozen app re-enter here
    sys.exit(main())
