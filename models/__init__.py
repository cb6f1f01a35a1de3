"""Bayesian models of customer relationships (imported as ``tenure.models``).

Every family has the same shape (see :mod:`tenure.models.base`): build from data and
a prior configuration, ``fit``, get ArviZ ``InferenceData`` back.
"""
