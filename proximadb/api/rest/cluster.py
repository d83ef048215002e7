"""Routes between the nodes of a cluster: a replica's snapshot (proximadb/cluster/snapshot.py)."""

from __future__ import annotations

import falcon

from proximadb.service.unified import UnifiedAvroService


class ReplicaSnapshotResource:
    """``GET /cluster/replicas/{replica}/snapshot``: the replica's files at a fresh checkpoint, as a tar
    stream (byte format: proximadb/cluster/snapshot.py). A read: the cluster key may ask. 404 on one node."""

    def __init__(self, service: UnifiedAvroService) -> None:
        self.service = service

    def on_get(self, req: falcon.Request, resp: falcon.Response, replica: str) -> None:
        doc, chunks = self.service.replica_snapshot(replica)
        resp.content_type = "application/x-tar"
        resp.set_header("X-ProximaDB-Checkpoint-Seq", str(doc["checkpoint_seq"]))
        resp.stream = chunks
