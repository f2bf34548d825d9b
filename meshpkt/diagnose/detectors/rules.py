"""Detectors over the rule model alone (dumps)."""
