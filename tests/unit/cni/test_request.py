"""The regex-free validators agree with the spec's patterns."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from antrea.apis.cni.request import valid_id

SPEC_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
ALPHABET = st.sampled_from("aZ09_.-/: \t\nä\x00")


@given(st.text(alphabet=ALPHABET, max_size=12) | st.text(max_size=12))
def test_valid_id_is_the_spec_pattern(value):
    """Container IDs and network names: ``^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`` (ASCII only)."""
    assert valid_id(value) == bool(SPEC_ID.fullmatch(value))
