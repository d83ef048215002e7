import numpy as np

OK: int
NOT_FINITE: int
ALL_ZERO: int
NORM_OVER: int

def first_bad_row(vectors: np.ndarray, cosine: bool, max_squared_norm: float) -> tuple[int, int, int]: ...
