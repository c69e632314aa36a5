"""Sandboxed Jinja2 templates for item text and prompts.

Item titles and descriptions are untrusted text: they are passed to templates as values, never parsed as
template source, and templates run in Jinja's `ImmutableSandboxedEnvironment`, so a title such as
`{{ 7*7 }}` renders literally and a template cannot reach Python internals. Every variable a template
uses is checked against the fields the caller provides when the template is compiled, so a typo fails
at load time with the file and template named, not halfway through a dataset.
"""

from __future__ import annotations

from collections.abc import Iterable

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmrec.errors import LlmrecError

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


def compile_template(source: str, fields: Iterable[str], where: str) -> jinja2.Template:
    """Parse `source`, reject variables outside `fields` (naming `where`), return the compiled template."""
    try:
        used = meta.find_undeclared_variables(_ENV.parse(source))
    except jinja2.TemplateSyntaxError as e:
        raise LlmrecError(f"{where}: template syntax error on its line {e.lineno}: {e.message}") from None
    unknown = sorted(used - set(fields))
    if unknown:
        raise LlmrecError(
            f"{where}: template uses unknown field(s) {', '.join(unknown)}; available: {', '.join(sorted(fields))}"
        )
    return _ENV.from_string(source)
