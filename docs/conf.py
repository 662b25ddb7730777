"""Sphinx configuration: Markdown pages (MyST) plus the API from numpydoc docstrings."""

project = "nodcombine"
author = "nodcombine developers"
extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
numpydoc_show_class_members = False
autodoc_mock_imports = []
myst_heading_anchors = 3
html_theme = "alabaster"
