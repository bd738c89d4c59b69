"""Entry point for ``python -m mummi_spec``."""

from __future__ import annotations

import sys

from mummi_spec.cli import main

sys.exit(main())
