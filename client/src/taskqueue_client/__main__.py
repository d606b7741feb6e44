"""`python -m taskqueue_client` is `tq`."""

import sys

from taskqueue_client.cli import main

sys.exit(main())
