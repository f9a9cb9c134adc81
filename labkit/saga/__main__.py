"""`python -m labkit.saga`: see labkit.saga.cli."""

import sys

from labkit.saga.cli import main

if __name__ == "__main__":
    sys.exit(main())
