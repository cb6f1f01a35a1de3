"""Scenarios, economics and policy comparison (imported as ``tenure.simulations``)."""
