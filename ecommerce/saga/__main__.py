"""`python -m ecommerce.saga`: see ecommerce.saga.runner."""

import sys

from ecommerce.saga.runner import main

if __name__ == "__main__":
    sys.exit(main())
