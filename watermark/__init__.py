"""Lineage through outputs: LLM watermarks (Kirchenbauer, Aaronson) and radioactivity tests (Sander et al. 2024)."""
