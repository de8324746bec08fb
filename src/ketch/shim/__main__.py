import sys

from ketch.shim.main import main

sys.exit(main())
