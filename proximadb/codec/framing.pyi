"""Stub for the compiled module proximadb.codec.framing (see framing.pyx for the byte layout)."""

from typing_extensions import Buffer

HEADER_SIZE: int
MAX_OP_TYPE_LEN: int

def encode_frame(op_type: str, datum: Buffer, schema_version: int = ...) -> bytes: ...
def decode_frame(buf: Buffer) -> tuple[int, str, memoryview]: ...
