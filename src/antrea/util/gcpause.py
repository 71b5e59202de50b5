"""Bulk decoding of long-lived objects without the cyclic garbage collector on the way.

A large input (a NetworkPolicy of thousands of rules: its JSON in the controller's informer,
its frames in the agent's stream) decodes into tens of thousands of objects that stay (caches,
compiled policies) and hold no cycles. A collection started meanwhile finds nothing to free;
a full one traverses every object the process holds (the agent's realized flows included:
126-145 ms measured in realize.py's API run, on the critical path). `paused` runs such a step
with the collector off and, when the step left more than ``freeze_after`` new tracked objects,
freezes what exists (`gc.freeze`, O(1)) so later collections skip it. Frozen objects are still
freed by reference counting; only garbage cycles alive at that moment are never collected.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FREEZE_AFTER_OBJECTS = 10_000


@contextmanager
def paused(freeze_after: int | None = FREEZE_AFTER_OBJECTS) -> Iterator[None]:
    """Run the block with the collector off (left alone if already off, e.g. in an
    enclosing `paused`); freeze afterwards above ``freeze_after`` new objects (None: never)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        # Collections were off: the generation-0 count is what the block added (net).
        if freeze_after is not None and gc.get_count()[0] > freeze_after:
            gc.freeze()
        gc.enable()
