"""Full-text search: the analyzer (text -> terms) and BM25 over the compiled inverted index."""
