"""Hypothesis profiles for the property tests: ``default`` (fast, CI) and ``slow`` (more examples).

Choose with ``TENURE_HYPOTHESIS_PROFILE=slow pytest tests/test_hardening_*.py``.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.register_profile("slow", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("TENURE_HYPOTHESIS_PROFILE", "default"))
