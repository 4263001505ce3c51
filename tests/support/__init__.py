"""Helpers shared by tests: fakes and fixtures for real local services."""
