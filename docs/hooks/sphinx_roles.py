"""MkDocs hook: drop the Sphinx roles (``:func:``, ``:class:``...) the docstrings carry.

The package's docstrings cite each other Sphinx-style (:func:`execute`); mkdocstrings renders the
backquoted name as code and leaves the role in front of it as text (``:func:execute``). This hook
removes the role from the API reference's HTML, keeping the code span.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):(?=<code>)")


def strip_roles(html: str) -> str:
    """``:func:<code>x</code>`` -> ``<code>x</code>``; other text unchanged."""
    return ROLE.sub("", html)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return strip_roles(html)
