"""What the tests and the benchmarks share (fixture models and their constants, fuzz targets): it imports the
installed packages only, never `tests` or `bench`, so neither depends on the other through it."""
