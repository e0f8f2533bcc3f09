"""Fixture module (being written)."""
