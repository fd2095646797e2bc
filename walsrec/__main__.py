"""`python -m walsrec`: the command line of `python run.py` (and of the `walsrec` script)."""

import sys

from cli import main

if __name__ == "__main__":
    sys.exit(main())
