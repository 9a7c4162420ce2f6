"""The ``looper`` command line."""
