"""Looper: an open end-to-end ML platform for product decisions."""
