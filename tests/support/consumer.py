"""A consumer that reads its secret once and asks for a token every second, as a process
(``python -m tests.support.consumer VAULT_URL SECRET_NAME APP_ID LOG_FILE PID_FILE``):
the demo's own consumer, :mod:`rotator.cli.demo.consumer`, which says more."""

from __future__ import annotations

import sys

from rotator.cli.demo.consumer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
