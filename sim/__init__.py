__version__ = "0.1.0"

# Compiled or pure Python, decided once before any model module loads (see sim/_native.py).
from sim._native import MODE as BUILD_MODE  # noqa: E402,F401
