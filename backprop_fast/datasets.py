"""Small data sets shipped inside the package, for examples, tests and benchmarks.

The files live in ``backprop_fast/data/`` (see ``data/README.txt`` there for
their source and licence) and are read through :mod:`importlib.resources`, so
they load from an installed wheel, a zip import or a source checkout alike.
"""
import gzip
import io
from importlib import resources

import numpy as np

__all__ = ["load_digits"]

_DIGITS_FILE = "digits.csv.gz"
_DIGITS_SHAPE = (1797, 65)  # 64 pixels and the label on each line


def _read_data_file(name):
    """Return the bytes of ``backprop_fast/data/<name>``."""
    return resources.files(__package__).joinpath("data").joinpath(name).read_bytes()


def load_digits():
    """Load the 8x8 handwritten digits: 1,797 images of the digits 0 to 9.

    The test-set subset of the UCI "Optical Recognition of Handwritten
    Digits" data set (E. Alpaydin and C. Kaynak, 1998; CC BY 4.0). Each image
    is an 8x8 grid of counts in 0..16, flattened row by row to 64 features;
    here the counts are divided by 16 so that every feature lies in [0, 1].
    The samples come in the file's order, about 180 of each digit.

    Returns
    -------
    X : ndarray of float64, shape (1797, 64)
        One image per row, pixels scaled to [0, 1]. A fresh array on every
        call: changing it changes no later result.
    y : ndarray of int64, shape (1797,)
        The digit each image shows, 0 to 9. It can be passed as ``y`` to
        ``Network.fit`` for a network with a 10-unit softmax output.

    Raises
    ------
    OSError
        If the data file is missing from the installation.
    ValueError
        If the data file does not hold 1,797 rows of 65 integers with pixels
        in 0..16 and labels in 0..9 (a damaged installation).

    Notes
    -----
    The file is ``backprop_fast/data/digits.csv.gz``; ``data/README.txt``
    beside it credits the source and gives the licence.

    Examples
    --------
    >>> from backprop_fast.datasets import load_digits
    >>> X, y = load_digits()
    >>> X.shape, y.shape
    ((1797, 64), (1797,))
    >>> float(X.min()), float(X.max()), int(y.min()), int(y.max())
    (0.0, 1.0, 0, 9)
    """
    text = gzip.decompress(_read_data_file(_DIGITS_FILE)).decode("ascii")
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape != _DIGITS_SHAPE:
        raise ValueError(
            f"{_DIGITS_FILE} holds an array of shape {table.shape}, expected "
            f"{_DIGITS_SHAPE}: the installed data file is damaged; reinstall backprop_fast"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 16 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(
            f"{_DIGITS_FILE} holds pixels outside 0..16 or labels outside 0..9: "
            "the installed data file is damaged; reinstall backprop_fast"
        )
    X = pixels.astype(np.float64) / 16.0
    y = np.ascontiguousarray(labels, dtype=np.int64)
    return X, y
