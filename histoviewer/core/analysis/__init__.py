"""Lesion measurement, size classes and staging (no Qt)."""
