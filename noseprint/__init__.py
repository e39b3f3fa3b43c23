"""noseprint's console script: the top floor, wiring only (the work lives in the packages below it)."""

__version__ = "0.1.0"
