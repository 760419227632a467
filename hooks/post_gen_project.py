"""Cookiecutter post-generation hook: render template/ with copier into the new project.

Copier renders the one source of files, so cookiecutter and copier give the same tree and the project can
later run `copier update`. Cookiecutter renders this file with Jinja: the template root and the answers
arrive below as JSON text. The hook runs with the new project as its current directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

# Raw triple-quoted strings keep the JSON's backslash escapes for json.loads. The spaces keep a JSON string's
# quote off the delimiter; inside, `tojson` escapes quotes as \" and never writes three in a row.
TEMPLATE_ROOT = Path(json.loads(r""" {{ rampart_template_root | tojson }} """))
CONTEXT: dict[str, Any] = json.loads(r""" {{ cookiecutter | tojson }} """)
PLACEHOLDER = ".rampart-placeholder"


def remove_placeholder(project: Path) -> None:
    """The placeholder only keeps cookiecutter's project folder in git; copier fills the folder."""
    (project / PLACEHOLDER).unlink(missing_ok=True)


def template_ref() -> str | None:
    """`--checkout` pins the version, else a git template renders HEAD (copier would take the last tag)."""
    if not (TEMPLATE_ROOT / ".git").exists():
        return None
    return str(CONTEXT.get("_checkout") or "HEAD")


def render_with_copier(project: Path, answers: dict[str, Any]) -> None:
    import copier

    copier.run_copy(
        str(TEMPLATE_ROOT),
        str(project),
        data=answers,
        defaults=True,
        overwrite=True,
        unsafe=True,
        quiet=True,
        vcs_ref=template_ref(),
    )


def durable_source() -> str:
    """Where `copier update` finds the template again: the URL cookiecutter cloned (abbreviations such as
    gh:owner/repo expanded), else the absolute template root (never the path as typed, e.g. `.`)."""
    from cookiecutter.config import BUILTIN_ABBREVIATIONS  # type: ignore[import-untyped]
    from cookiecutter.repository import (  # type: ignore[import-untyped]
        expand_abbreviations,
        is_repo_url,
        is_zip_file,
    )

    source = str(expand_abbreviations(str(CONTEXT["_template"]), BUILTIN_ABBREVIATIONS))
    if is_repo_url(source) and not is_zip_file(source):
        return source
    return str(TEMPLATE_ROOT)


def rewrite_src_path(answers_file: Path, source: str) -> None:
    """Replace only the `_src_path` entry: copier wrote the template root cookiecutter cloned or was given."""
    lines = answers_file.read_bytes().decode("utf-8").splitlines(keepends=True)
    starts = [index for index, line in enumerate(lines) if line.startswith("_src_path:")]
    if not starts:
        sys.exit(f"{answers_file.name} has no _src_path entry: copier update could not find the template")
    end = starts[0] + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):  # a long value wrapped onto more lines
        end += 1
    lines[starts[0] : end] = [yaml.safe_dump({"_src_path": source}, allow_unicode=True, width=2**31 - 1)]
    answers_file.write_bytes("".join(lines).encode("utf-8"))


def main() -> None:
    sys.path.insert(0, str(TEMPLATE_ROOT))  # this hook runs from a temporary copy of itself
    import rampart_frontend

    project = Path.cwd()
    remove_placeholder(project)
    answers = {name: CONTEXT[name] for name in rampart_frontend.question_names() if name in CONTEXT}
    render_with_copier(project, answers)
    rewrite_src_path(project / rampart_frontend.answers_file_name(), durable_source())


if __name__ == "__main__":
    main()
