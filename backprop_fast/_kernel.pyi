# Type stub of the compiled kernel (src/_kernel.pyx); see its docstrings.
from typing import Any, Callable, Optional, Tuple

import numpy as np

HISTORY_COLUMNS: Tuple[str, ...]

class Settings:
    epochs: int
    batch: int
    patience: int
    learning_rate: float
    momentum: float
    beta1: float
    beta2: float
    epsilon: float
    weight_decay: float
    power_t: float
    min_delta: float
    optimizer: int
    schedule: int
    nesterov: bool
    shuffle: bool
    early_stopping: bool
    restore_best: bool

def cpu_supports(isa: str) -> bool: ...
def bsum_size(sizes: np.ndarray, acts: np.ndarray, batch: int) -> int: ...
def workspace_size(sizes: np.ndarray, acts: np.ndarray, batch: int) -> int: ...
def extremes(x: np.ndarray) -> Tuple[float, float]: ...
def all_finite(x: np.ndarray) -> bool: ...
def rng_seed(state: np.ndarray, seed: int) -> None: ...
def fit(params: np.ndarray, sizes: np.ndarray, acts: np.ndarray, loss: int,
        X: np.ndarray, Y: np.ndarray, sample_weight: np.ndarray, X_val: np.ndarray,
        Y_val: np.ndarray, settings: Settings, rng_state: np.ndarray, step: np.ndarray,
        order: np.ndarray, work: np.ndarray, bsum: np.ndarray, grad: np.ndarray,
        m1: np.ndarray, m2: np.ndarray, snapshot: np.ndarray, best: np.ndarray,
        history: np.ndarray,
        epoch_end: Optional[Callable[[int], Any]]) -> Tuple[int, int, int]: ...
def gradients(params: np.ndarray, sizes: np.ndarray, acts: np.ndarray, loss: int,
              X: np.ndarray, Y: np.ndarray, grad: np.ndarray, work: np.ndarray,
              bsum: np.ndarray) -> float: ...
def predict(params: np.ndarray, sizes: np.ndarray, acts: np.ndarray, X: np.ndarray,
            out: np.ndarray, work: np.ndarray, batch: int) -> None: ...
def evaluate(params: np.ndarray, sizes: np.ndarray, acts: np.ndarray, loss: int,
             X: np.ndarray, Y: np.ndarray, work: np.ndarray, bsum: np.ndarray,
             batch: int) -> float: ...
def _test_elementwise(name: str, x: np.ndarray) -> None: ...
