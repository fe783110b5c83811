"""Sphinx's settings for the docs site: the Markdown pages under docs/, read by MyST, in furo.
Built strictly in CI (`make docs-check`: every warning, a dead link or a page left out, fails)."""

project = "tinygpt"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
myst_heading_anchors = 3  # [text](page.md#a-section-title) links to that section
html_theme = "furo"
html_title = "tinygpt"
exclude_patterns = ["_build"]
