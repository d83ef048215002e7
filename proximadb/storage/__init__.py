"""Storage engine: WAL, memtable, segments, manifest, catalog, recovery."""
