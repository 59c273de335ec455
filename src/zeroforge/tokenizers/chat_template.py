"""A model's chat template: the Jinja2 program its tokenizer ships, rendered as ``transformers`` does.

A pretrained tokenizer carries the template (``tokenizer_config.json`` ``chat_template`` or the GGUF
metadata); rendering it turns a list of ``{"role", "content"}`` messages into the text the model was
trained on, as ``transformers``' ``apply_chat_template`` does. Chat (``zeroforge.chat``) renders the
conversation so far; SFT data (``zeroforge.data.sft``) renders training rows.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from zeroforge.errors import ZeroforgeError

Message = dict[str, str]


def render_chat(
    template: str, messages: list[Message], add_generation_prompt: bool = True, **variables: Any
) -> str:
    """The text a chat template makes of ``messages`` (then the assistant's opening when
    ``add_generation_prompt``). ``variables`` reach the template too (``bos_token``, ``eos_token``)."""
    try:
        from jinja2 import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise ZeroforgeError("chat templates need jinja2 (pip install jinja2)") from None

    def raise_exception(message: str) -> None:
        raise ZeroforgeError(f"chat template: {message}")

    # As transformers' chat template renderer: sandboxed, trim_blocks/lstrip_blocks, loop controls.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **variables
        )
    except TemplateError as err:
        raise ZeroforgeError(f"chat template: {err}") from None
