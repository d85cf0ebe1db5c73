"""Sphinx configuration of the backprop_fast documentation.

Build: ``pip install ".[docs]" && sphinx-build -W -b html docs docs/_build/html``.
autodoc imports the installed package (its kernel is compiled), never this
source tree.
"""
import backprop_fast

project = "backprop_fast"
author = "the backprop_fast developers"
copyright = "2026, the backprop_fast developers"
release = backprop_fast.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True}
autodoc_typehints = "none"          # the numpydoc sections describe the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
intersphinx_mapping = {}            # no network at build time

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"backprop_fast {release}"
html_theme_options = {
    "description": "Dense neural networks trained by fused Cython backpropagation on the CPU",
    "fixed_sidebar": True,
}
highlight_language = "text"          # untagged blocks are program output
