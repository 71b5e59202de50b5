"""A reusable lab for end-to-end tests, always taken down afterwards.

Usage::

    pytestmark = [pytest.mark.root, pytest.mark.ovs, pytest.mark.lab]

    async def test_something(lab: Lab) -> None:            # 2 nodes, default CNI, module-scoped
        async with lab.client() as client: ...
        doc = await lab.probe(port=80)

    @pytest.mark.parametrize("lab", [LabParams(nodes=3, cni="antrea", encap="geneve")],
                             indirect=True)
    async def test_other(lab: Lab) -> None: ...

    with lab_session(LabParams(nodes=2)) as lab: ...        # a private lab for one test

`lab` is module-scoped: tests in one module share it (and should clean up the objects they
create; `lab.reset_model()` removes the x/y/z model). `model_lab` is `lab` with the e2e model
(x, y, z x a, b, c) created and running.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from antrea.testbed.lab.testing import Lab, LabParams, lab_session

__all__ = ["Lab", "LabParams", "lab_session"]


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    params: LabParams = getattr(request, "param", None) or LabParams()
    with lab_session(params) as handle:
        yield handle


@pytest.fixture(scope="module")
def model_lab(lab: Lab) -> Iterator[Lab]:
    """`lab` with the e2e model (x, y, z x a, b, c) running."""
    import asyncio

    asyncio.run(lab.create_model())
    yield lab
