"""Comparison of fingerprints (and, later, storage, the log, the HTTP API and web pages)."""
