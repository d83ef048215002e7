"""``head_ready``: when the worker's main loop hands a connection to the thread pool (see server/http_worker.py).

The daemon-level behaviour (slow senders, deadlines, refusals) is in test_daemon_resilience.py.
"""

from __future__ import annotations

import pytest

from proximadb.server.http_worker import HeadRefused, head_ready

LINE, HEAD = 4094, 100 * 8192 + 4102


def ready(head: bytes) -> bool:
    return head_ready(head, LINE, HEAD)


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",  # one empty line first (RFC 9112 section 2.2)
    b"POST /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",  # body bytes after the head
    b"GET / HTTP/1.1\nHost: x\n\n",  # bare LF: complete for the parser's purposes, which refuses it
    b"GET / HTTP/1.1\r\nHost: x\n",
    b"GET /" + b"a" * (LINE + 10),  # a request line already too long (414 from the parser)
])
def test_complete_or_decidable_heads(head: bytes) -> None:
    assert ready(head)


@pytest.mark.parametrize("head", [
    b"", b"\r", b"G", b"GET", b"GET /health HTTP/1.1", b"GET /health HTTP/1.1\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\n\r",
    b"\r\n", b"\r\nGET / HTTP/1.1\r\n",
])
def test_unfinished_heads_wait(head: bytes) -> None:
    assert not ready(head)


def test_a_tls_client_hello_is_refused_with_a_message_that_says_so() -> None:
    with pytest.raises(HeadRefused, match="TLS handshake") as info:
        ready(b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03")
    assert info.value.status == 400


@pytest.mark.parametrize("head", [b"\x00", b"GE\x00T / HTTP/1.1", b"{\"json\": 1}", b"GET\t/"])
def test_bytes_that_cannot_begin_a_request_are_refused(head: bytes) -> None:
    with pytest.raises(HeadRefused, match="HTTP method") as info:
        ready(head)
    assert info.value.status == 400


def test_an_unfinished_head_over_the_limit_is_refused() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"X-A: " + b"a" * 2000 + b"\r\n"
    assert not head_ready(head, LINE, len(head))
    with pytest.raises(HeadRefused) as info:
        head_ready(head + b"X", LINE, len(head))
    assert info.value.status == 431


@pytest.mark.parametrize("head", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n",
    b"\r\nPOST /c HTTP/1.1\r\nA: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n",
])
def test_fed_a_byte_at_a_time_it_agrees_with_a_whole_look(head: bytes) -> None:
    seen = 0
    for end in range(1, len(head) + 1):
        part = head[:end]
        got = head_ready(part, LINE, HEAD, seen)
        assert got == ready(part), part
        if got:
            break
        seen = end
    else:
        raise AssertionError("never ready")
