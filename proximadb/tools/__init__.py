"""Operator tools that work offline on a data directory; the CLI in ``proximadb/cli/`` calls them.

Each tool is plain Python usable without Click (and tested that way), reads the
storage layer's formats through the storage modules, and never writes to a
directory it only inspects.
"""
