"""Flow cookies: ``round (16 bits) | category (8 bits) | object id (40 bits)``.

The round number changes at every agent start; a restarted agent re-installs its flows under
the new round, then deletes the previous round's leftovers with one cookie-masked delete
(`round_filter`: a `FlowFilter` value, rendered by `render.render_filter`).
"""

from __future__ import annotations

from enum import IntEnum

from antrea.ovs.openflow.flow import FlowFilter

ROUND_SHIFT = 48
CATEGORY_SHIFT = 40
ROUND_MASK = 0xFFFF << ROUND_SHIFT
CATEGORY_MASK = 0xFF << CATEGORY_SHIFT
OBJECT_MASK = (1 << CATEGORY_SHIFT) - 1


class Category(IntEnum):
    DEFAULT = 0
    POD_CONNECTIVITY = 1
    NETWORK_POLICY = 2
    SERVICE = 3
    NODE_ROUTE = 4


def make_cookie(round_num: int, category: Category, object_id: int = 0) -> int:
    return (
        ((round_num & 0xFFFF) << ROUND_SHIFT)
        | (int(category) << CATEGORY_SHIFT)
        | (object_id & OBJECT_MASK)
    )


def cookie_round(cookie: int) -> int:
    return (cookie & ROUND_MASK) >> ROUND_SHIFT


def cookie_category(cookie: int) -> Category:
    return Category((cookie & CATEGORY_MASK) >> CATEGORY_SHIFT)


def round_filter(round_num: int) -> FlowFilter:
    """Every flow of one round (for del-flows/dump-flows)."""
    return FlowFilter(cookie=(round_num & 0xFFFF) << ROUND_SHIFT, cookie_mask=ROUND_MASK)


def category_filter(category: Category) -> FlowFilter:
    """Every flow of one category, whatever its round."""
    return FlowFilter(cookie=int(category) << CATEGORY_SHIFT, cookie_mask=CATEGORY_MASK)


def round_category_filter(round_num: int, category: Category) -> FlowFilter:
    """The flows of one round AND one category."""
    value = ((round_num & 0xFFFF) << ROUND_SHIFT) | (int(category) << CATEGORY_SHIFT)
    return FlowFilter(cookie=value, cookie_mask=ROUND_MASK | CATEGORY_MASK)
