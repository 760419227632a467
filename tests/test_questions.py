"""Level 1 of the test ladder: the questionnaire.

copier.yml refuses bad answers with a clear message and derives sensible names from unusual ones;
cookiecutter.json mirrors copier.yml (names, order, choices, defaults, prompts, derived defaults); the
cookiecutter front-end's pre-generation hook refuses the same answers before anything is written.
"""

from __future__ import annotations

import importlib
import json
import keyword
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

pytestmark = pytest.mark.fast

REPO_ROOT = Path(__file__).resolve().parents[1]
COPIER_YML: dict[str, Any] = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
COOKIECUTTER_JSON: dict[str, Any] = json.loads((REPO_ROOT / "cookiecutter.json").read_text(encoding="utf-8"))
ANSWERS_FILE = str(COPIER_YML.get("_answers_file", ".copier-answers.yml"))
ANSWERS_FILE_TEMPLATE = "{{_copier_conf.answers_file}}.jinja"
QUESTIONS = {
    name: spec
    for name, spec in COPIER_YML.items()
    if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
}
DERIVED = ("project_slug", "package_name")
# Validation comes before any task runs; `unsafe` only keeps copier from refusing a template with tasks.
STRICT: dict[str, Any] = {"defaults": True, "unsafe": True, "skip_tasks": True, "quiet": True}


def refused(question: str, answer: str, message: str) -> Any:
    """A bad answer to one question and what copier's (and the hook's) message must say about it."""
    return pytest.param({question: answer}, question, message, id=f"{question}={answer}")


BAD_ANSWERS = [
    refused("package_name", "class", "'class' is a Python keyword"),
    refused("package_name", "json", "'json' is a standard library module"),
    refused("package_name", "fastapi", "'fastapi' would shadow a package"),
    refused("package_name", "1abc", "'1abc' is not a Python identifier"),
    refused("package_name", "Acme", "'Acme' is not a Python identifier"),
    refused("project_slug", "Bad_Slug", "'Bad_Slug' is not a valid distribution name"),
    refused("project_slug", "-x", "'-x' is not a valid distribution name"),
    refused("project_slug", "a--b", "'a--b' is not a valid distribution name"),
    refused("project_slug", "a" * 41, "is longer than 40 characters"),
    refused("author_email", "platform.example.com", "is not an e-mail address"),
    refused("project_name", 'Acme "Edge" Service', "must not contain double quotes"),
]

# project name -> (slug, package) copier derives: digits first, stdlib and keyword names, non-ASCII.
DERIVED_NAMES = {
    "Acme Service": ("acme-service", "acme_service"),
    "3D Print-Farm Service 2": ("3d-print-farm-service-2", "app_3d_print_farm_service_2"),
    "Logging": ("logging", "logging_app"),
    "Class": ("class", "class_app"),
    "Test": ("test", "test_app"),
    "Zoë's Café -- Orders": ("zo-s-caf-orders", "zo_s_caf_orders"),
    "  Billing   API v2!  ": ("billing-api-v2", "billing_api_v2"),
    "42": ("42", "app_42"),
}


@pytest.fixture(scope="module")
def template_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """copier.yml and template/ in a plain folder: copier renders it without cloning."""
    root = tmp_path_factory.mktemp("template-copy")
    shutil.copy2(REPO_ROOT / "copier.yml", root / "copier.yml")
    shutil.copytree(REPO_ROOT / "template", root / "template", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def questionnaire_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """copier.yml with only the answers file to render: the cheapest way to read copier's own answers."""
    root = tmp_path_factory.mktemp("questionnaire-copy")
    shutil.copy2(REPO_ROOT / "copier.yml", root / "copier.yml")
    (root / "template").mkdir()
    shutil.copy2(REPO_ROOT / "template" / ANSWERS_FILE_TEMPLATE, root / "template" / ANSWERS_FILE_TEMPLATE)
    return root


def copier_answers(template: Path, destination: Path, data: dict[str, Any]) -> dict[str, Any]:
    copier.run_copy(str(template), str(destination), data=data, **STRICT)
    answers: dict[str, Any] = yaml.safe_load((destination / ANSWERS_FILE).read_text(encoding="utf-8"))
    return answers


@pytest.mark.parametrize(("answers", "question", "message"), BAD_ANSWERS)
def test_copier_refuses_bad_answer_with_clear_message(
    template_copy: Path, tmp_path: Path, answers: dict[str, str], question: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"question '{question}'") as refused:
        copier.run_copy(str(template_copy), str(tmp_path / "out"), data=answers, **STRICT)
    assert message in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_copier_refuses_an_answer_outside_the_choices(template_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"Invalid choice for 'database': 'mysql' is not in \["):
        copier.run_copy(str(template_copy), str(tmp_path / "out"), data={"database": "mysql"}, **STRICT)


@pytest.mark.parametrize(("answers", "question", "message"), BAD_ANSWERS)
def test_cookiecutter_refuses_bad_answer_before_writing(
    use_frontend: Callable[[Path], None],
    cookiecutter_config: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    answers: dict[str, str],
    question: str,
    message: str,
) -> None:
    use_frontend(REPO_ROOT)
    output = tmp_path / "out"
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(REPO_ROOT),
            no_input=True,
            extra_context=answers,
            output_dir=str(output),
            config_file=str(cookiecutter_config),
        )
    stderr = capfd.readouterr().err
    refusals = [line for line in stderr.splitlines() if line.startswith("Invalid answer for ")]
    assert refusals, stderr  # the first is the bad answer; a name derived from it may follow
    assert refusals[0].startswith(f"Invalid answer for {question}: ")
    assert message in refusals[0]
    assert "because pre_gen_project hook" in caplog.text, "the post-generation hook had to stop it"
    assert list(output.iterdir()) == []


def test_cookiecutter_refuses_an_answer_outside_the_choices(
    use_frontend: Callable[[Path], None], cookiecutter_config: Path, tmp_path: Path
) -> None:
    use_frontend(REPO_ROOT)
    output = tmp_path / "out"
    with pytest.raises(ValueError, match="mysql provided for choice variable database"):
        cookiecutter(
            str(REPO_ROOT),
            no_input=True,
            extra_context={"database": "mysql"},
            output_dir=str(output),
            config_file=str(cookiecutter_config),
        )
    assert not output.exists() or list(output.iterdir()) == []


def test_frontend_refuses_what_cookiecutter_lets_through(use_frontend: Callable[[Path], None]) -> None:
    """A replayed or hand-edited context skips cookiecutter's choice and yes/no checks: the hook must not."""
    use_frontend(REPO_ROOT)
    frontend = importlib.import_module("rampart_frontend")
    errors = dict(
        frontend.answer_errors({"database": "mysql", "redis": "maybe", "sentry": "TRUE", "ci": "none"})
    )
    assert errors == {
        "database": "'mysql' is not in ['sqlite', 'postgres', 'none']",
        "redis": "expected true or false, got 'maybe'",
    }
    assert frontend.answer_errors({}) == []


def test_unusual_answers_are_accepted_and_derive_sensible_names(
    questionnaire_copy: Path, tmp_path: Path
) -> None:
    data = {"project_name": "3D Print-Farm Service 2", "author_name": "Zoë O'Brien-Núñez"}
    answers = copier_answers(questionnaire_copy, tmp_path / "out", data)
    assert answers["project_name"] == "3D Print-Farm Service 2"
    assert answers["author_name"] == "Zoë O'Brien-Núñez"
    assert answers["project_slug"] == "3d-print-farm-service-2"
    assert answers["package_name"] == "app_3d_print_farm_service_2"


def test_cookiecutter_json_asks_copier_questions_in_copier_order() -> None:
    asked = [name for name in COOKIECUTTER_JSON if not name.startswith("_")]
    assert asked == list(QUESTIONS)
    assert COOKIECUTTER_JSON["_extensions"] == ["rampart_frontend.RampartExtension"]


def test_cookiecutter_json_choices_start_with_copier_default() -> None:
    choice_questions = {name: spec for name, spec in QUESTIONS.items() if "choices" in spec}
    assert choice_questions, "copier.yml has no choice question left to compare"
    for name, spec in choice_questions.items():
        expected = [spec["default"], *(choice for choice in spec["choices"] if choice != spec["default"])]
        assert COOKIECUTTER_JSON[name] == expected, name


def test_cookiecutter_json_literal_defaults_equal_copier_defaults() -> None:
    for name, spec in QUESTIONS.items():
        default = spec.get("default")
        if "choices" in spec or name in DERIVED:
            continue
        assert "{" not in str(default), (
            f"{name}: a templated copier default needs a derived cookiecutter default"
        )
        if spec.get("type") == "bool":
            assert COOKIECUTTER_JSON[name] is default, name
        else:
            assert COOKIECUTTER_JSON[name] == default, name


def test_cookiecutter_json_derived_defaults_render_copier_yml() -> None:
    for name in DERIVED:
        assert "{{" in str(QUESTIONS[name]["default"]), f"copier.yml's {name} default is no longer derived"
        assert COOKIECUTTER_JSON[name] == f"{{{{ cookiecutter | rampart_default('{name}') }}}}"


def test_cookiecutter_prompts_are_copier_help_texts() -> None:
    assert COOKIECUTTER_JSON["__prompts__"] == {name: spec["help"] for name, spec in QUESTIONS.items()}


@pytest.mark.parametrize("project_name", list(DERIVED_NAMES))
def test_cookiecutter_derives_the_names_copier_derives(
    use_frontend: Callable[[Path], None], questionnaire_copy: Path, tmp_path: Path, project_name: str
) -> None:
    from_copier = copier_answers(questionnaire_copy, tmp_path / "out", {"project_name": project_name})
    use_frontend(REPO_ROOT)
    context = generate_context(
        str(REPO_ROOT / "cookiecutter.json"), extra_context={"project_name": project_name}
    )
    from_cookiecutter = prompt_for_config(context, no_input=True)
    expected = DERIVED_NAMES[project_name]
    assert (from_copier["project_slug"], from_copier["package_name"]) == expected
    assert (from_cookiecutter["project_slug"], from_cookiecutter["package_name"]) == expected


def reserved_names(entry: str) -> set[str]:
    loaded = yaml.safe_load(COPIER_YML[entry]["default"])
    assert isinstance(loaded, list), entry
    return {str(name) for name in loaded}


def test_reserved_names_cover_this_python_keywords_and_stdlib() -> None:
    assert set(keyword.kwlist) - reserved_names("python_keywords") == set()
    stdlib = {name for name in sys.stdlib_module_names if not name.startswith("_")}
    assert stdlib - reserved_names("stdlib_modules") == set()
