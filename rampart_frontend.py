"""Rampart's cookiecutter front-end: copier.yml's questions, derived defaults and validators for cookiecutter.

Cookiecutter loads this module as a Jinja extension (cookiecutter.json `_extensions`) and the hooks import it.
It reads copier.yml next to itself, so copier.yml stays the one source of truth: cookiecutter.json's derived
defaults and the pre-generation checks render copier.yml's own `default:` and `validator:` templates here.
Only jinja2, pyyaml and the standard library are used: copier may be missing (`pipx install cookiecutter`).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, StrictUndefined, Undefined
from jinja2.exceptions import FilterArgumentError
from jinja2.ext import Extension
from jinja2.sandbox import SandboxedEnvironment

TEMPLATE_ROOT = Path(__file__).resolve().parent
COPIER_YML = TEMPLATE_ROOT / "copier.yml"
UNDEFINED_CLASSES: dict[str, type[Undefined]] = {
    "jinja2.Undefined": Undefined,
    "jinja2.StrictUndefined": StrictUndefined,
}
# The copier the front-end renders with: the same pin as the template's own pyproject.toml (a test checks).
COPIER_VERSION = "9.19.1"
COPIER_MISSING = (
    "Rampart's cookiecutter front-end renders with copier, which cookiecutter's Python cannot import. "
    f"Install it beside cookiecutter: pipx inject cookiecutter copier=={COPIER_VERSION} "
    f"(or pip install copier=={COPIER_VERSION} in cookiecutter's environment), then run cookiecutter again."
)
BOOL_STRINGS = {"true": True, "false": False}
FALSY_STRINGS = {"", "0", "n", "no", "f", "false", "off", "~", "null", "none"}
CASTS: dict[str, Callable[[Any], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "json": json.loads,
    "yaml": yaml.safe_load,
}


def regex_replace(value: Any = "", pattern: str = "", replacement: str = "", ignorecase: bool = False) -> str:
    """`re.sub` over the text of `value`, like jinja2-ansible-filters' `regex_replace`."""
    return re.compile(pattern, re.IGNORECASE if ignorecase else 0).sub(replacement, str(value))


def regex_search(
    value: str, regex: str, *backrefs: str, ignorecase: bool = False, multiline: bool = False
) -> str | list[str] | None:
    """The first match of `regex` in `value` (or the groups named by `\\1`, `\\g<name>`), else None.

    Same semantics as jinja2-ansible-filters' `regex_search`, which copier's validators are written for.
    """
    groups: list[int | str] = []
    for backref in backrefs:
        if named := re.match(r"\\g<(\S+)>", backref):
            groups.append(named.group(1))
        elif numbered := re.match(r"\\(\d+)", backref):
            groups.append(int(numbered.group(1)))
        else:
            raise FilterArgumentError("Unknown argument")
    flags = (re.IGNORECASE if ignorecase else 0) | (re.MULTILINE if multiline else 0)
    match = re.search(regex, value, flags)
    if match is None:
        return None
    if not groups:
        return match.group()
    return [match.group(group) for group in groups]


@cache
def copier_settings() -> dict[str, Any]:
    """copier.yml as a mapping (settings start with `_`; everything else is a question or computed value)."""
    loaded: dict[str, Any] = yaml.safe_load(COPIER_YML.read_text(encoding="utf-8"))
    return loaded


def _entries() -> dict[str, dict[str, Any]]:
    """Every question and computed value of copier.yml in order (`name: value` shorthand is a default)."""
    return {
        name: spec if isinstance(spec, dict) else {"default": spec}
        for name, spec in copier_settings().items()
        if not name.startswith("_")
    }


def _is_computed(spec: Mapping[str, Any]) -> bool:
    """`when: false` marks a computed value: never asked, never stored in the answers file."""
    return spec.get("when") is False or str(spec.get("when", "")).strip().lower() == "false"


def questions() -> dict[str, dict[str, Any]]:
    """The questions copier asks, in copier.yml's order (cookiecutter.json mirrors exactly these)."""
    return {name: spec for name, spec in _entries().items() if not _is_computed(spec)}


def question_names() -> list[str]:
    return list(questions())


def answers_file_name() -> str:
    return str(copier_settings().get("_answers_file", ".copier-answers.yml"))


def question_type(spec: Mapping[str, Any]) -> str:
    """The declared type, else the one copier infers from the default."""
    if declared := spec.get("type"):
        return str(declared)
    default = spec.get("default")
    if isinstance(default, bool):
        return "bool"
    return {int: "int", float: "float", str: "str"}.get(type(default), "yaml")


@cache
def copier_environment() -> SandboxedEnvironment:
    """A Jinja environment like copier's for copier.yml: sandboxed, `_envops` applied, the regex filters."""
    envops = dict(copier_settings().get("_envops") or {})
    if "undefined" in envops:
        envops["undefined"] = UNDEFINED_CLASSES[envops["undefined"]]
    env = SandboxedEnvironment(**envops)
    env.filters["regex_replace"] = regex_replace
    env.filters["regex_search"] = regex_search
    return env


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render a value like copier does: strings are templates, lists element-wise, the rest as is."""
    if isinstance(value, str):
        return copier_environment().from_string(value).render(context)
    if isinstance(value, list):
        return [_render(item, context) for item in value]
    return value


def _cast(spec: Mapping[str, Any], value: Any) -> Any:
    """Cast an answer to the question's type; bools must be real bools or "true"/"false" in any case."""
    type_name = question_type(spec)
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in BOOL_STRINGS:
            return BOOL_STRINGS[value.strip().lower()]
        raise ValueError(f"expected true or false, got {value!r}")
    if type_name in {"json", "yaml"} and not isinstance(value, str):
        return value
    return CASTS.get(type_name, str)(value)


def _choices(spec: Mapping[str, Any], context: Mapping[str, Any]) -> list[Any]:
    """The valid values of a choice question (a list of values, or a mapping of label -> value)."""
    choices = spec.get("choices") or []
    values = list(choices.values()) if isinstance(choices, dict) else list(choices)
    return [_cast(spec, _render(value, context)) for value in values]


def computed_values(answers: Mapping[str, Any]) -> dict[str, Any]:
    """The `when: false` values (reserved names...), rendered and cast as copier does, answers in context."""
    values: dict[str, Any] = {}
    for name, spec in _entries().items():
        if _is_computed(spec):
            values[name] = _cast(spec, _render(spec.get("default"), {**answers, **values}))
    return values


def _known_answers(answers: Mapping[str, Any]) -> dict[str, Any]:
    """Only copier's questions: cookiecutter's context also carries `_template`, `_extensions`..."""
    names = questions()
    return {name: value for name, value in answers.items() if name in names}


def render_default(answers: Mapping[str, Any], name: str) -> Any:
    """copier.yml's default for `name` given the answers so far (the `rampart_default` filter)."""
    known = _known_answers(answers)
    spec = questions()[name]
    return _cast(spec, _render(spec.get("default"), {**computed_values(known), **known}))


def _is_asked(spec: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    """A question whose `when:` renders falsy (copier's reading of "false", "no", "0"...) is skipped."""
    when = str(_render(spec.get("when", True), context)).strip().lower()
    return when not in FALSY_STRINGS


def _answer_error(spec: Mapping[str, Any], name: str, value: Any, context: dict[str, Any]) -> str:
    """copier's verdict on one answer: "" when accepted, else the message copier would show."""
    try:
        value = _cast(spec, value)
    except ValueError as error:
        return str(error)
    if "choices" in spec and value not in (valid := _choices(spec, context)):
        return f"{value!r} is not in {valid}"
    context[name] = value
    try:
        return str(_render(spec.get("validator", ""), context)).strip()
    except Exception as error:  # copier, too, turns a failing validator into its message
        return str(error)


def answer_errors(answers: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(question, message) for every answer copier.yml's choices, types or validators refuse.

    Questions are checked in copier.yml's order with the answers so far in the context, as copier does; a
    missing answer takes copier.yml's default.
    """
    known = _known_answers(answers)
    context: dict[str, Any] = computed_values(known)
    errors: list[tuple[str, str]] = []
    for name, spec in questions().items():
        if not _is_asked(spec, context):
            continue
        value = known[name] if name in known else _render(spec.get("default"), context)
        if message := _answer_error(spec, name, value, context):
            errors.append((name, message))
        context.setdefault(name, value)
    return errors


class RampartExtension(Extension):
    """Gives cookiecutter's Jinja what Rampart needs: copier's regex filters, the derived defaults of
    copier.yml (`{{ cookiecutter | rampart_default('package_name') }}`) and the absolute template root
    (`rampart_template_root`: cookiecutter passes `_repo_dir` as typed, and hooks run in the new project)."""

    def __init__(self, environment: Environment) -> None:
        # Loaded before the first question: stop there, not after the answers, when copier is missing.
        # Cookiecutter reports an ImportError raised here as one line, "Unable to load extension: ...".
        if importlib.util.find_spec("copier") is None:
            raise ImportError(COPIER_MISSING)
        super().__init__(environment)
        environment.globals["rampart_template_root"] = str(TEMPLATE_ROOT)
        environment.filters["regex_replace"] = regex_replace
        environment.filters["regex_search"] = regex_search
        environment.filters["rampart_default"] = render_default
