"""A cluster node process for test_node.py: joins, then reports what it holds until it is killed.

``python _node_child.py DATA_DIR NATS_URLS NODE_ID COLLECTION``

Opens the data directory in cluster mode, starts a ClusterNode (membership TTL 6 s, sync every
0.2 s) and prints one JSON line every 0.1 s, flushed: ``{"held": [shards of COLLECTION held here],
"count": rows in them}``. The test kills it with SIGKILL and starts it again on the same directory.
"""

from __future__ import annotations

import json
import sys
import time

from proximadb.cluster.membership import NodeInfo
from proximadb.cluster.node import ClusterNode
from proximadb.storage.engine import Engine


def main() -> int:
    data_dir, urls, node_id, collection = sys.argv[1:5]
    engine = Engine.open(data_dir, log_of_record="external")
    info = NodeInfo(node_id, f"http://127.0.0.1:0/{node_id}", f"127.0.0.1:0/{node_id}", time.time())
    node = ClusterNode(engine, urls.split(","), info, ttl=6.0, sync_interval=0.2, deadline=60.0).start()
    while True:
        held = node.held().get(collection, [])
        count = 0
        for shard in held:
            applier = node._applier(collection, shard)
            if applier is not None:
                count += applier.collection.count()
        sys.stdout.write(json.dumps({"held": held, "count": count}) + "\n")
        sys.stdout.flush()
        time.sleep(0.1)


if __name__ == "__main__":
    raise SystemExit(main())
