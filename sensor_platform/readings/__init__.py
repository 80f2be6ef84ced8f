"""Canonical readings: the public schema and the normalizer that produces it."""
