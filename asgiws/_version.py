"""The version of asgiws, in a module of its own so that nothing imports the package upward."""

__version__ = "0.1.0"
