"""``python -m ketch.daemon``: run ketchd."""

from __future__ import annotations

import sys

from ketch.daemon.main import main

if __name__ == "__main__":
    sys.exit(main())
