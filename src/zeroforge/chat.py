"""Multi-turn chat with a model's own chat template, streamed as it is generated.

    zeroforge chat smollm2-135m-instruct
    > What is the capital of France?
    The capital of France is Paris.
    > /reset        (forget the conversation)      > /exit  (or Ctrl-D)

The conversation is a list of ``{"role", "content"}`` messages. Every turn renders the whole list
with the template the model ships (a Jinja2 program in tokenizer_config.json or the GGUF metadata,
rendered as ``transformers.apply_chat_template`` does: ``tokenizers/chat_template.py``), then
generates until the model's end-of-turn token (its tokenizer's eos). Decoding is
``zeroforge.generation``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from zeroforge.errors import ZeroforgeError
from zeroforge.tokenizers.chat_template import Message, render_chat


def chat_template_of(tokenizer: Any, where: str = "model") -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ZeroforgeError(
            f"chat: {where} has no chat template (tokenizer_config.json chat_template); use zeroforge generate"
        )
    return template


class ChatSession:
    """One conversation: ``send(text)`` renders the history with the template, generates the reply
    (streamed to ``stream`` piece by piece) and appends both turns; ``reset()`` forgets them."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        system: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = chat_template_of(tokenizer)
        self.system = system
        self.sampling = dict(
            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed
        )
        self.messages: list[Message] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def prompt(self) -> str:
        """The rendered conversation so far, ending with the assistant's opening."""
        specials = getattr(self.tokenizer, "specials", {})
        variables = {f"{role}_token": token for role, token in specials.items()}
        return render_chat(self.template, self.messages, add_generation_prompt=True, **variables)

    def send(self, text: str, stream: Callable[[str], Any] | None = None) -> str:
        from zeroforge.generation import generate

        self.messages.append({"role": "user", "content": text})
        try:
            reply = generate(self.model, self.tokenizer, self.prompt(), stream=stream, **self.sampling)
        except BaseException:
            self.messages.pop()  # a failed or interrupted turn leaves the history as it was
            raise
        assert isinstance(reply, str)
        self.messages.append({"role": "assistant", "content": reply.strip()})
        return reply


def chat_loop(session: ChatSession, lines: Iterable[str], write: Callable[[str], Any]) -> None:
    """Read user turns from ``lines``; ``/reset`` forgets the conversation, ``/exit`` (or the end) stops."""
    write("> ")
    for line in lines:
        text = line.strip()
        if text == "/exit":
            break
        if text == "/reset":
            session.reset()
            write("(conversation reset)\n")
        elif text:
            session.send(text, stream=write)
            write("\n")
        write("> ")
    write("\n")


# ----------------------------------------------------------------------------- CLI
