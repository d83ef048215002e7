"""The one rule for a metadata value, used by every path that accepts metadata.

A value is one branch of the Avro union ``{null, boolean, long, double, string, array<string>}``
(schemas/v*/vector_record.avsc). The Cython encoder (avro_batch.encode_vector_batch, behind
``encode_insert``) handles exact ``None/str/bool/int/float/list`` itself and hands everything else,
and every out-of-range int, to :func:`plain_metadata_value`; storage/validation.check_metadata
(insert after decoding, update_metadata) calls it too. So all paths accept numpy scalars and
refuse the same values with the same words.
"""

from __future__ import annotations

import numpy as np

from proximadb.errors import ValidationError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ALLOWED = "None, bool, int, float, str, list of str"
PlainValue = None | bool | int | float | str | list[str]


def plain_metadata_value(value: object, key: object, where: str) -> PlainValue:
    """``value`` as the plain Python value it is stored as, or ValidationError naming key and ``where``.

    numpy bool / integer / floating scalars become bool / int / float, str subclasses str, a
    tuple of strings a list. Integers must fit in a signed 64-bit long. Finiteness of doubles
    is a storage rule (validation.metadata_bytes), not an encoding one: Avro carries NaN.
    """
    t = type(value)
    if value is None or t is str or t is bool or t is float:
        return value  # type: ignore[return-value]  # exactly one of the plain types
    if isinstance(value, bool | np.bool_):  # before int: bool is an int subclass
        return bool(value)
    if isinstance(value, int | np.integer):
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise ValidationError(
                f"metadata value of key {key!r} of {where} is out of the signed 64-bit range: {value}"
            )
        return number
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        for item in value:
            if not isinstance(item, str):
                raise ValidationError(
                    f"metadata value of key {key!r} of {where}: list items must be str, got {type(item).__name__}"
                )
        return [str(item) for item in value]
    raise ValidationError(
        f"metadata value of key {key!r} of {where} has unsupported type {t.__name__}; metadata.{key} must be one of "
        f"{ALLOWED}"
    )
