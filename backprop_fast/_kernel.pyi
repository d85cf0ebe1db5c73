# Type stub of the compiled kernel (src/_kernel.pyx); see its docstrings.
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

HISTORY_COLUMNS: Tuple[str, ...]
ACTIVATION_CODES: Dict[str, int]
LOSS_CODES: Dict[str, int]
OPTIMIZER_CODES: Dict[str, int]
SCHEDULE_CODES: Dict[str, int]
STOPPING_CODES: Dict[str, int]
METRIC_CODES: Dict[Optional[str], int]
STATUS_NONFINITE_COST_CODE: int
STATUS_DIVERGED_KEPT_BEST_CODE: int
SMALL_PRODUCT_MACS: int

class _View:
    """A typed memoryview object from view, view_readonly or view2 (at run
    time Cython's _memoryviewslice), taken in by the functions here without
    checking its buffer again. A name of this stub only."""
    size: int

# Every array argument below may also be given as a _View of it.
Buffer = Union[np.ndarray, _View]

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
    stopping: int
    val_metric: int
    tol: float
    n_iter_no_change: float
    loss_penalty: float
    best_loss: float
    best_score: float
    no_improvement: float
    samples_seen: float
    rate: float

engine: ModuleType  # the engine module in use (see use)

def use(module: ModuleType) -> None: ...
def checked() -> bool: ...
def cpu_supports(isa: str) -> bool: ...
def threads(n_threads: int = 0) -> int: ...
def bsum_size(sizes: Buffer, acts: Buffer, batch: int) -> int: ...
def workspace_size(sizes: Buffer, acts: Buffer, batch: int, sparse: bool = False) -> int: ...
def extremes(x: Buffer) -> Tuple[float, float]: ...
def all_finite(x: Buffer) -> bool: ...
def finite_rows(a: Buffer, unit: bool) -> bool: ...
def r2_terms(y: Buffer, pred: Buffer) -> Tuple[float, float]: ...
def dense_labels(y: Buffer) -> int: ...
def one_hot(y: Buffer, Y: Buffer) -> None: ...
def label_codes(classes: Buffer, y: Buffer, codes: Buffer) -> int: ...
def rng_seed(state: np.ndarray, seed: int) -> None: ...
def view(a: np.ndarray) -> _View: ...
def view_readonly(a: np.ndarray) -> _View: ...
def view2(a: np.ndarray) -> _View: ...
# A sparse X: (indptr, indices, data), int64, int64 and the network's dtype.
_Csr = Tuple[np.ndarray, np.ndarray, np.ndarray]

class FitCall:
    """One network's fit, checked by fit_call, run by run_fits."""

def fit_call(params: Buffer, sizes: Buffer, acts: Buffer, loss: int,
             X: Buffer, Y: Buffer, sample_weight: Buffer, X_val: Buffer,
             Y_val: Buffer, settings: Settings, rng_state: Buffer, step: Buffer,
             order: Buffer, work: Buffer, bsum: Buffer, grad: Buffer,
             m1: Buffer, m2: Buffer, snapshot: Buffer, best: Buffer,
             history: Buffer,
             epoch_end: Optional[Callable[[int], Any]],
             val_weight: Optional[Buffer] = None,
             val_stats: Optional[Buffer] = None, x_sparse: Optional[_Csr] = None,
             val_sparse: Optional[_Csr] = None, bf16: bool = False,
             own_scratch: bool = False) -> FitCall: ...
def run_fits(calls: List[FitCall], n_threads: int = 0,
             spread: bool = True) -> List[Tuple[int, int, int]]: ...
def gradients(params: Buffer, sizes: Buffer, acts: Buffer, loss: int,
              X: Buffer, Y: Buffer, grad: Buffer, work: Buffer,
              bsum: Buffer, n_threads: int = 0, x_sparse: Optional[_Csr] = None,
              sample_weight: Optional[Buffer] = None, bf16: bool = False) -> float: ...
def predict(params: Buffer, sizes: Buffer, acts: Buffer, X: Buffer,
            out: Buffer, work: Buffer, batch: int, n_threads: int = 0,
            x_sparse: Optional[_Csr] = None, bf16: bool = False) -> None: ...
def evaluate(params: Buffer, sizes: Buffer, acts: Buffer, loss: int,
             X: Buffer, Y: Buffer, work: Buffer, bsum: Buffer,
             batch: int, n_threads: int = 0, x_sparse: Optional[_Csr] = None,
             sample_weight: Optional[Buffer] = None, bf16: bool = False) -> float: ...
def round_bfloat16(x: Buffer, out: Buffer) -> None: ...
def _test_element(x: np.ndarray, i: int) -> float: ...
def _test_elementwise(name: str, x: np.ndarray) -> None: ...
