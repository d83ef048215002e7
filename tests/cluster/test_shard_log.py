"""The shard log (proximadb/cluster/shard_log.py) on real NATS JetStream servers on 127.0.0.1.

Three nats-server processes form a JetStream cluster (proximadb/cluster/nats_servers.py);
streams have three replicas and every write is fsynced before it is acknowledged. The tests
kill servers with SIGKILL and check that every acknowledged append is still there, once.
"""

from __future__ import annotations

import time

import pytest

from proximadb.cluster.nats_servers import NatsCluster
from proximadb.cluster.shard_log import JetStreamLog, LogDeletedError, LogPurgedError
from proximadb.errors import LogUnavailableError, ValidationError

DEADLINE = 60.0  # generous: a JetStream leader election takes a few seconds, more on a loaded machine


def until(what: str, call, deadline: float = DEADLINE):  # type: ignore[no-untyped-def]
    """call() until it stops raising LogUnavailableError (an election, a restart), within the deadline."""
    end = time.monotonic() + deadline
    while True:
        try:
            return call()
        except LogUnavailableError:
            if time.monotonic() > end:
                raise AssertionError(f"{what}: the log stayed unavailable for {deadline:g}s") from None
            time.sleep(0.2)


def test_appends_are_read_back_in_order_and_a_retry_is_applied_once(nats3: NatsCluster) -> None:
    log = JetStreamLog(nats3.urls, "docs-s0", replicas=3, create=True)
    try:
        acks = [log.append(f"payload {i}".encode(), f"w{i}") for i in range(20)]
        assert [a.seq for a in acks] == list(range(1, 21))
        assert not any(a.duplicate for a in acks)
        again = log.append(b"payload 7", "w7")  # a client retrying a write it has no answer for
        assert (again.seq, again.duplicate) == (8, True)
        entries = log.read(1, 100)
        assert [(e.seq, e.payload, e.msg_id) for e in entries] == [
            (i + 1, f"payload {i}".encode(), f"w{i}") for i in range(20)
        ]
        assert [e.seq for e in log.read(15, 3)] == [15, 16, 17]
        assert log.read(21) == []
        assert (log.first_seq(), log.last_seq()) == (1, 20)
    finally:
        log.close()


def test_purge_below_drops_the_prefix_only(nats3: NatsCluster) -> None:
    log = JetStreamLog(nats3.urls, "docs-s1", replicas=3, create=True)
    try:
        for i in range(10):
            log.append(bytes([i]), f"p{i}")
        log.purge_below(6)
        assert (log.first_seq(), log.last_seq()) == (6, 10)
        assert [e.payload for e in log.read(6)] == [bytes([i]) for i in range(5, 10)]
        with pytest.raises(LogPurgedError, match="below 6 were purged"):
            log.read(2)
        assert log.append(b"next", "p10").seq == 11  # numbering goes on above the purge
    finally:
        log.close()


def test_bad_arguments_are_refused_and_change_nothing(nats3: NatsCluster) -> None:
    with pytest.raises(ValidationError, match="letters, digits"):
        JetStreamLog(nats3.urls, "docs.s0")
    log = JetStreamLog(nats3.urls, "docs-s2", replicas=3, create=True)
    try:
        with pytest.raises(ValidationError, match="msg_id"):
            log.append(b"x", "")
        with pytest.raises(ValidationError, match="at least 1"):
            log.read(0)
        assert log.last_seq() == 0
    finally:
        log.close()


def test_acknowledged_appends_survive_a_sigkill_of_the_stream_leader(nats3: NatsCluster) -> None:
    log = JetStreamLog(nats3.urls, "docs-s3", replicas=3, create=True)
    acked: dict[str, int] = {}
    try:
        for i in range(30):
            acked[f"a{i}"] = log.append(f"before {i}".encode(), f"a{i}").seq
        leader = nats3.stream_leader(log.stream)
        assert leader is not None
        nats3.servers[leader].kill()
        for i in range(30):  # writes go on once a new leader is elected; retries reuse the msg_id
            acked[f"b{i}"] = until("append after the leader's kill",
                                   lambda i=i: log.append(f"after {i}".encode(), f"b{i}")).seq
        nats3.restart(leader)
        entries = until("read everything", lambda: log.read(1, 1000))
        by_id = {e.msg_id: e for e in entries}
        assert len(entries) == len(by_id) == 60, "each acknowledged append exactly once"
        assert [e.seq for e in entries] == list(range(1, 61))
        for msg_id, seq in acked.items():
            assert by_id[msg_id].seq == seq
    finally:
        log.close()


def test_acknowledged_appends_survive_a_sigkill_of_every_server(nats3: NatsCluster) -> None:
    log = JetStreamLog(nats3.urls, "docs-s4", replicas=3, timeout=2.0, deadline=4.0, create=True)
    for i in range(25):
        log.append(f"entry {i}".encode(), f"e{i}")
    for server in nats3.servers:  # all at once: only what was fsynced before the ack can come back
        server.kill()
    started = time.monotonic()
    # the call's deadline, or at once when the connection has been down for CUT_OFF_SECONDS already
    with pytest.raises(LogUnavailableError, match=r"did not answer within 4s|cut off from every NATS server"):
        log.append(b"nobody hears this", "lost")  # not acknowledged, so it may not be expected back
    assert time.monotonic() - started < 30, "the deadline bounds a call"
    log.close()
    nats3.start()
    reopened = until("open the log after the restart", lambda: JetStreamLog(nats3.urls, "docs-s4", replicas=3))
    try:
        entries = until("read after the restart", lambda: reopened.read(1, 100))
        assert [(e.seq, e.payload) for e in entries] == [(i + 1, f"entry {i}".encode()) for i in range(25)]
        assert reopened.append(b"again", "e25").seq == 26
    finally:
        reopened.close()


def test_only_a_create_makes_a_log_and_a_missing_one_is_an_answer_not_an_outage(nats3: NatsCluster) -> None:
    started = time.monotonic()
    with pytest.raises(LogDeletedError, match="does not exist"):
        JetStreamLog(nats3.urls, "never-made", replicas=3)  # a holder or an append: never makes it
    made = JetStreamLog(nats3.urls, "docs-s5", replicas=3, create=True)
    held = JetStreamLog(nats3.urls, "docs-s5", replicas=3)  # opened while it exists
    try:
        assert held.append(b"one", "d1").seq == 1
        made.delete()
        with pytest.raises(LogDeletedError):
            held.append(b"two", "d2")  # no stream listens: asked, found gone, not retried for the deadline
        with pytest.raises(LogDeletedError):
            held.read(1)
        held.purge_below(2)  # nothing left to purge
        held.delete()  # gone already
        assert time.monotonic() - started < 20, "every answer at once, none after the 30 s deadline"
        with pytest.raises(LogDeletedError):
            JetStreamLog(nats3.urls, "docs-s5", replicas=3)  # the append did not make it again
    finally:
        held.close()
        made.close()
