"""The package is typed (PEP 561) and versioned."""
import inspect
from importlib import resources

import backprop_fast


def test_py_typed_marker_is_installed():
    assert resources.files("backprop_fast").joinpath("py.typed").is_file()


def test_version():
    assert isinstance(backprop_fast.__version__, str)
    assert backprop_fast.__version__.count(".") >= 2


def test_one_version_source():
    """pyproject.toml takes the version from backprop_fast.__version__."""
    from importlib.metadata import version

    assert version("backprop_fast") == backprop_fast.__version__


def test_public_functions_added_here_are_annotated():
    from backprop_fast import cli, onnx, plot
    from backprop_fast.sklearn import MLPClassifier, MLPRegressor

    for func in (onnx.to_onnx, onnx.to_onnx_model, onnx.register_skl2onnx,
                 MLPClassifier.to_onnx, MLPRegressor.to_onnx,
                 plot.plot_history, plot.history_lists,
                 cli.add_commands, cli.save_model, cli.load_model,
                 MLPClassifier.fit, MLPClassifier.partial_fit, MLPClassifier.predict,
                 MLPClassifier.predict_proba, MLPClassifier.predict_log_proba,
                 MLPRegressor.fit, MLPRegressor.partial_fit, MLPRegressor.predict):
        sig = inspect.signature(func)
        assert all(p.annotation is not inspect.Parameter.empty
                   for name, p in sig.parameters.items() if name != "self"), func.__qualname__
        assert sig.return_annotation is not inspect.Signature.empty, func.__qualname__


def test_network_api_is_annotated():
    from backprop_fast import Network

    for func in (Network.__init__, Network.fit, Network.partial_fit, Network.predict,
                 Network.evaluate, Network.gradients, Network.train_step, Network.save,
                 Network.load, Network.to_onnx):
        assert "return" in func.__annotations__, func.__qualname__
