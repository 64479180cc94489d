"""The floor pyproject declares for globus-compute-sdk really runs the remote path (issue 18).

globus-compute-sdk 4.0-4.6 pull in globus-sdk 3.x, where every remote
command died with ``ImportError: cannot import name 'RetryCheckCollection'``.
A separate environment with the declared floor of the SDK, its own endpoint
package (the loopback service runs the endpoint's code) and the lowest
globus-sdk that floor allows runs a few remote tests (tests/floor_environment.py:
built and run in the background from the start of the session).
"""

from __future__ import annotations

import pytest
from floor_environment import declared_floor


@pytest.mark.slow
def test_the_declared_sdk_floor_passes_the_remote_tests(floor_environment):
    built = floor_environment
    if built.get("unreachable"):
        pytest.skip(f"the floor's packages cannot be had here: {built['error'][-300:]}")
    assert "python" in built, built.get("error")
    floor, versions = built["floor"], [built["sdk"], built["globus_sdk"]]
    assert floor == declared_floor("globus-compute-sdk")
    from packaging.version import Version

    assert Version(versions[0]) == Version(floor)
    assert built["tests_exit"] == 0, (
        f"globus-compute-sdk {versions[0]} with globus-sdk {versions[1]}:\n{built['tests_output']}"
    )
