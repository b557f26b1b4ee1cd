"""``python -m cimsim``: the ``cimsim`` command (the same parser, exit status and output), for
an environment whose scripts folder is not on the PATH."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
