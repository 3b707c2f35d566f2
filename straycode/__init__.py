"""straycode: detect security codes nobody asked for."""
__version__ = "0.1.0"
