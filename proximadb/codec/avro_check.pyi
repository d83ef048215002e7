from typing import Any

import numpy as np

OPCODES: dict[str, int]

def check_datum(datum: Any, program: np.ndarray, record: str) -> None: ...
