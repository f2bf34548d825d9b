"""Detectors that look at individual packets: checksums, idle gaps, resets."""
