"""`python -m mahavishnu.cli`: the same command line as `mahavishnu`."""

import sys

from mahavishnu.cli import main

if __name__ == "__main__":
    sys.exit(main())
