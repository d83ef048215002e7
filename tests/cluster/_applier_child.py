"""A replica process for test_applier.py: applies a shard log into a data directory until told to stop.

``python _applier_child.py DATA_DIR NATS_URLS LOG_NAME COLLECTION UNTIL_SEQ``

Opens the data directory in cluster mode (log_of_record "external"), runs a ShardApplier on
the JetStream log (batches of 50, a checkpoint every 100 entries) and prints one JSON line
per step, flushed: ``{"applied": N}`` every 10 ms while it applies, then ``{"done": N}`` once
entry UNTIL_SEQ is applied and the applier has stopped and checkpointed (exit 0), or
``{"error": "..."}`` (exit 1). The test kills it with SIGKILL mid-stream, or lets it finish.
"""

from __future__ import annotations

import json
import sys

from proximadb.cluster.applier import ShardApplier
from proximadb.cluster.shard_log import JetStreamLog
from proximadb.storage.engine import Engine


def say(**line: object) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def main() -> int:
    data_dir, urls, log_name, collection, until = sys.argv[1:6]
    shard_log = JetStreamLog(urls.split(","), log_name, replicas=3, deadline=60.0)
    try:
        with Engine.open(data_dir, log_of_record="external", fsync="never") as engine:
            applier = ShardApplier(shard_log, engine.collection(collection), 50, checkpoint_entries=100,
                                   checkpoint_seconds=3600.0)
            say(started=applier.applied_seq)
            applier.start()
            while not applier.wait_for(int(until), timeout=0.01):
                say(applied=applier.applied_seq)
            applier.stop()
            say(done=applier.applied_seq)
    except Exception as exc:
        say(error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        shard_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
