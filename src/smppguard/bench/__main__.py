"""``python -m smppguard.bench`` is ``smppguard bench`` (the submit benchmark's options)."""

import sys

from .proxy import main

sys.exit(main())
