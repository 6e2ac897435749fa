"""Building blocks shared by the flow schema modules: names, DTMF keys, templates and per-language texts.

A spoken text (``say``, ``ask``, reprompts, fillers) is either one template or a mapping from language tag
to template, so one flow can speak several languages::

    say:
      en-US: Welcome to the clinic.
      fr-FR: Bienvenue à la clinique.

A tag ``fr`` also serves ``fr-FR`` and ``fr-CA``; see :func:`text_for`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
)

DTMF_KEYS = "0123456789*#ABCD"


def _scalar_to_str(value: Any) -> Any:
    """Accept unquoted numbers where text is meant (``dtmf: 1``, ``- 7``); booleans stay errors (YAML traps)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str | dict) else value


def _phrases_in(value: Any) -> Any:
    """``phrases: sales`` is ``[sales]``; per language: ``{en: [sales], fr: vente}``."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return {k: ([v] if isinstance(v, str) else v) for k, v in value.items()}
    return value


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
"""Step, variable, choice and intent names: identifiers, so templates and diagrams can use them."""
StepRef = Name
LanguageTag = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"}),
]
"""A BCP-47 language tag: ``en``, ``en-US``, ``fr-FR``."""
Text = Annotated[str, BeforeValidator(_scalar_to_str)]
Template = Annotated[str, BeforeValidator(_scalar_to_str), Field(min_length=1)]
Expression = Annotated[str, BeforeValidator(_scalar_to_str), Field(min_length=1)]


def _by_shape(value: Any) -> str:
    """Pick the union member by the YAML shape, so an error names only the form the author wrote. The tag
    names are the ones the validator's error paths skip (``dict[...]``, ``list[...]``, ``function-...``)."""
    if isinstance(value, dict):
        return "dict[language]"
    return "list[texts]" if isinstance(value, list) else "function-text"


_PER_LANGUAGE_TEXT = {"type": "object", "additionalProperties": {"type": "string"}}
Speech = Annotated[
    Annotated[Template, Tag("function-text")] | Annotated[dict[LanguageTag, Template], Tag("dict[language]")],
    Discriminator(_by_shape),
    WithJsonSchema({"anyOf": [{"type": "string"}, _PER_LANGUAGE_TEXT]}),
]
"""A spoken text: one template, or one per language (``{en: Hello, fr: Bonjour}``)."""
DtmfKey = Annotated[
    str,
    BeforeValidator(_scalar_to_str),
    StringConstraints(pattern=r"^[0-9*#A-D]$"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9*#A-D]$"},
                {"type": "integer", "minimum": 0, "maximum": 9},
            ],
            "description": "One DTMF key: 0-9, *, #, A-D. Quote * and # in YAML.",
        }
    ),
]
_TEXT_ITEM = {"type": ["string", "number"]}
_PER_LANGUAGE = _PER_LANGUAGE_TEXT
_TEXTS_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        _PER_LANGUAGE,
        {"type": "array", "items": {"anyOf": [_TEXT_ITEM, _PER_LANGUAGE]}},
    ]
}
Prompts = Annotated[
    list[Speech], BeforeValidator(_one_or_many), Field(min_length=1), WithJsonSchema(_TEXTS_SCHEMA)
]
"""One or more spoken texts: the n-th failure of a question says the n-th (the last one repeats)."""
_PHRASES_SCHEMA = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": _TEXT_ITEM},
        {
            "type": "object",
            "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "array", "items": _TEXT_ITEM}]},
        },
    ]
}
Phrases = Annotated[
    Annotated[list[Text], Tag("list[texts]")]
    | Annotated[dict[LanguageTag, list[Text]], Tag("dict[language]")],
    Discriminator(_by_shape),
    BeforeValidator(_phrases_in),
    WithJsonSchema(_PHRASES_SCHEMA),
]
"""Words that pick something: a list, or one list per language (``{en: [sales], fr: [ventes]}``)."""
Millis = Annotated[int, Field(ge=0, le=600_000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


def language_key(tags: Mapping[str, Any] | Sequence[str], language: str) -> str | None:
    """The entry of ``tags`` that serves ``language``: the exact tag, else its primary subtag (``fr`` for
    ``fr-FR``), else an entry with the same primary subtag (``fr-FR`` for ``fr``)."""
    keys = list(tags)
    lower = {k.lower(): k for k in keys}
    wanted = language.lower()
    if wanted in lower:
        return lower[wanted]
    primary = wanted.split("-")[0]
    if primary in lower:
        return lower[primary]
    return next((k for k in keys if k.lower().split("-")[0] == primary), None)


def text_for(value: str | Mapping[str, str], language: str, default: str) -> str | None:
    """The variant of a spoken text for ``language`` (falling back to the flow's ``default`` language)."""
    if isinstance(value, str):
        return value
    for lang in (language, default):
        key = language_key(value, lang)
        if key is not None:
            return value[key]
    return None


def phrases_for(value: Sequence[str] | Mapping[str, Sequence[str]], language: str) -> tuple[str, ...]:
    """The phrases that count in ``language``: a plain list counts in every language."""
    if not isinstance(value, Mapping):
        return tuple(value)
    key = language_key(value, language)
    return tuple(value[key]) if key is not None else ()


def variants(value: str | Mapping[str, str]) -> list[tuple[str | None, str]]:
    """Every (language or None, text) of a spoken text, for validation and prerendering."""
    if isinstance(value, str):
        return [(None, value)]
    return list(value.items())
