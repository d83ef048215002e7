"""The ``proximadb`` command line (Click)."""
