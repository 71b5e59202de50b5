"""Lab defaults that change as the product grows (kept apart so the CLI imports stay light)."""

from __future__ import annotations

import os
from typing import cast

from antrea.testbed.lab.state import CniMode

# The node network `antrea lab up` uses without --cni ($ANTREA_LAB_CNI overrides).
DEFAULT_CNI: CniMode = "antrea"


def default_cni() -> CniMode:
    value = os.environ.get("ANTREA_LAB_CNI", DEFAULT_CNI)
    if value not in ("antrea", "reference"):
        value = DEFAULT_CNI
    return cast(CniMode, value)
