"""``python -m mummi_spec.runtime.toy``: see ``cli``."""

from __future__ import annotations

from mummi_spec.runtime.toy.cli import main

raise SystemExit(main())
