"""Offline evaluation: holdout metrics, plots, and off-policy value of decision policies."""
