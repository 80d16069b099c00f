"""`python -m benchmarks.docs [--check]`: see the package's docstring."""

import sys

from benchmarks.docs import main

if __name__ == "__main__":
    sys.exit(main())
