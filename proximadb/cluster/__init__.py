"""Cluster mode: shards replicated through a log of record (NATS JetStream)."""
