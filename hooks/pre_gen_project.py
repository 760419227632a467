"""Cookiecutter pre-generation hook: stop before anything is written if copier is missing or an answer is bad.

Cookiecutter renders this file with Jinja, so the template root and the answers arrive below as JSON text. The
answers are checked with copier.yml's own choices and validators (rampart_frontend.py renders them), so
cookiecutter refuses exactly what copier refuses, with the same messages.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

# Raw triple-quoted strings keep the JSON's backslash escapes for json.loads. The spaces keep a JSON string's
# quote off the delimiter; inside, `tojson` escapes quotes as \" and never writes three in a row.
TEMPLATE_ROOT = Path(json.loads(r""" {{ rampart_template_root | tojson }} """))
ANSWERS: dict[str, Any] = json.loads(r""" {{ cookiecutter | tojson }} """)


def require_copier() -> None:
    """The post-generation hook renders template/ with copier: without it, stop now.

    The front-end's Jinja extension has already refused to load without copier; this guards a copier
    that is found but cannot be imported.
    """
    import rampart_frontend

    try:
        importlib.import_module("copier")
    except ImportError:
        print(rampart_frontend.COPIER_MISSING, file=sys.stderr)
        raise SystemExit(1) from None


def refuse_invalid_answers() -> None:
    """Print every answer copier.yml refuses, then stop."""
    import rampart_frontend

    errors = rampart_frontend.answer_errors(ANSWERS)
    for question, message in errors:
        print(f"Invalid answer for {question}: {message}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


def main() -> None:
    sys.path.insert(0, str(TEMPLATE_ROOT))  # this hook runs from a temporary copy of itself
    require_copier()
    refuse_invalid_answers()


if __name__ == "__main__":
    main()
