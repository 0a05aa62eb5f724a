"""Sightline: a self-hosted event collector for product analytics."""

__version__ = "0.1.0"
