"""``python -m zmfast``: the ``zmfast`` command line (see zmfast._cli)."""

import sys

from zmfast._cli import main

if __name__ == "__main__":
    sys.exit(main())
