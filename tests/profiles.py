"""Hypothesis profiles of the long-running property tests: a bounded one for CI, a long one.

``ASGIWS_STATE_MACHINE=long`` chooses the long profile; ``ASGIWS_STATE_MACHINE_EXAMPLES=N``
sets the example count of either.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


# A long run is not bounded by pytest-timeout's default (give the test timeout(0 if LONG_RUN ...)).
LONG_RUN = os.environ.get("ASGIWS_STATE_MACHINE", "ci") != "ci" or bool(
    os.environ.get("ASGIWS_STATE_MACHINE_EXAMPLES")
)


def profile(
    ci_examples: int, long_examples: int, *, ci_steps: int = 50, long_steps: int = 50
) -> settings:
    """The chosen profile: ``ci_examples`` with a 2 s deadline and no example database, or
    ``long_examples`` without a deadline; the steps are those of a stateful test."""
    ci = settings(
        max_examples=ci_examples,
        stateful_step_count=ci_steps,
        deadline=2000,
        database=None,
        suppress_health_check=_SLOW,
    )
    long = settings(
        max_examples=long_examples,
        stateful_step_count=long_steps,
        deadline=None,
        suppress_health_check=_SLOW,
    )
    chosen = {"ci": ci, "long": long}[os.environ.get("ASGIWS_STATE_MACHINE", "ci")]
    examples = os.environ.get("ASGIWS_STATE_MACHINE_EXAMPLES")
    return settings(chosen, max_examples=int(examples)) if examples else chosen
