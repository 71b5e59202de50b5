"""Name and value syntax checks agree with apimachinery's rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antrea.k8s import names


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("a_b-c.d", True),
        ("A", True),
        ("-a", False),
        ("a-", False),
        ("", False),
        ("a/b/c", False),
        ("/a", False),
        ("Example.com/a", False),
        ("x" * 63, True),
        ("x" * 64, False),
        ("a" * 253 + "/x", True),
        ("a" * 254 + "/x", False),
    ],
)
def test_qualified_name(value: str, ok: bool) -> None:
    """Label keys: optional DNS subdomain prefix, 63-char name part."""
    assert (names.is_qualified_name(value) == []) is ok


@pytest.mark.parametrize(
    ("fn", "value", "ok"),
    [
        (names.is_dns1123_label, "node1", True),
        (names.is_dns1123_label, "a.b", False),
        (names.is_dns1123_label, "1abc", True),
        (names.is_dns1035_label, "1abc", False),
        (names.is_dns1123_subdomain, "a.b-c.d", True),
        (names.is_dns1123_subdomain, "A.b", False),
        (names.is_dns1123_subdomain, "a" * 254, False),
        (names.is_config_map_key, "ca.crt", True),
        (names.is_config_map_key, "..x", False),
        (names.is_config_map_key, "a/b", False),
        (names.is_path_segment_name, "a:b", True),
        (names.is_path_segment_name, "..", False),
        (names.is_valid_cidr, "10.0.0.1/24", True),
        (names.is_valid_cidr, "10.0.0.0", False),
        (names.is_valid_cidr, "10.0.0.0/255.0.0.0", False),
        (names.is_valid_cidr, "fd00::/8", True),
        (names.is_valid_ip, "fd00::1", True),
        (names.is_valid_ip, "10.0.0.256", False),
    ],
)
def test_other_checks(fn: object, value: str, ok: bool) -> None:
    """DNS labels/subdomains, config keys, path segments, IPs and CIDRs."""
    assert callable(fn)
    assert (fn(value) == []) is ok


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


@given(st.text(alphabet="aZ9-_.", max_size=70))
def test_label_value_matches_regex(value: str) -> None:
    """Label values: the upstream regex and at most 63 characters."""
    ok = bool(_LABEL_VALUE.match(value)) and len(value) <= 63
    assert (names.is_valid_label_value(value) == []) is ok


_VALID_OCTET = st.integers(0, 255).map(str)
_OCTET_LIKE = st.one_of(
    _VALID_OCTET,
    _VALID_OCTET,
    _VALID_OCTET,
    st.integers(0, 300).map(str),
    st.integers(0, 99).map(lambda n: f"0{n}"),
    st.text("0123456789x ", max_size=4),
    st.sampled_from(["", "٣", "1\x00", "+1", "-1", "0x1"]),
)


def _zero_padded(addr_octet: tuple[str, int]) -> str:
    """The address with a leading zero before one of its octets."""
    addr, which = addr_octet
    return ".".join(f"0{o}" if i == which else o for i, o in enumerate(addr.split(".")))


@settings(max_examples=500)
@given(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 3)).map(_zero_padded),
        st.lists(_OCTET_LIKE, min_size=4, max_size=4).map(".".join),
        st.lists(_OCTET_LIKE, min_size=3, max_size=5).map(".".join),
    ),
    st.one_of(st.integers(0, 40).map(str), st.sampled_from(["", "024", "٣", " 8", "8 "])),
)
def test_cidr_ok_takes_exactly_what_parse_cidr_takes(addr: str, prefix: str) -> None:
    """The inet_pton fast path for IPv4 agrees with the `ipaddress` parse on dotted
    strings near the valid ones (leading zeros, 256+, too few/many octets, non-ASCII digits,
    embedded NULs); an IPv6 form goes to the parse itself."""
    for value in (f"{addr}/{prefix}", addr, f"::{addr}/{prefix}"):
        assert names.cidr_ok(value) == (names.parse_cidr(value) is not None), value


@settings(max_examples=300)
@given(
    st.lists(st.integers(0, 300), min_size=4, max_size=4),
    st.integers(0, 40),
    st.integers(0, 2),
    st.integers(0, 4),
)
def test_cidr_ok_on_octets_and_prefixes_around_their_limits(
    octets: list[int], prefix: int, prefix_zeros: int, padded: int
) -> None:
    """Octets past 255, one octet zero-padded (or none: ``padded`` 4), prefixes past 32 with
    leading zeros: `cidr_ok` (its canonical-IPv4 pattern first) agrees with `parse_cidr`."""
    addr = ".".join(f"0{o}" if i == padded else str(o) for i, o in enumerate(octets))
    value = f"{addr}/{'0' * prefix_zeros}{prefix}"
    assert names.cidr_ok(value) == (names.parse_cidr(value) is not None), value


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("255.255.255.255/32", True),
        ("0.0.0.0/0", True),
        ("10.0.0.0/032", True),
        ("256.1.2.3/8", False),
        ("1.2.3.4/33", False),
        ("01.2.3.4/8", False),
        ("1.2.3.4/", False),
        ("1.2.3/8", False),
        ("1.2.3.4.5/8", False),
        ("1.2.3.4/٣", False),
    ],
)
def test_cidr_ok_examples(value: str, ok: bool) -> None:
    assert names.cidr_ok(value) is ok
    assert (names.parse_cidr(value) is not None) is ok
