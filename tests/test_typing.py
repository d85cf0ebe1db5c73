"""The package is typed (PEP 561) and versioned."""
import inspect
from importlib import resources

import backprop_fast


def test_py_typed_marker_is_installed():
    assert resources.files("backprop_fast").joinpath("py.typed").is_file()


def test_version():
    assert isinstance(backprop_fast.__version__, str)
    assert backprop_fast.__version__.count(".") >= 2


def test_public_functions_added_here_are_annotated():
    from backprop_fast import cli, onnx, plot

    for func in (onnx.to_onnx, onnx.to_onnx_model, plot.plot_history, plot.history_lists,
                 cli.add_commands, cli.save_model, cli.load_model):
        sig = inspect.signature(func)
        assert all(p.annotation is not inspect.Parameter.empty
                   for p in sig.parameters.values()), func.__name__
