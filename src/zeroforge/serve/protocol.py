"""Request bodies of the OpenAI API as far as this server reads them (pydantic; unknown fields ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Request):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text: a string, or the text parts of a list of content parts."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")


class _Sampling(_Request):
    model: str | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None  # not in OpenAI's API; llama.cpp's and vLLM's servers take it too
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] = ""


class EmbeddingRequest(_Request):
    model: str | None = None
    input: str | list[str]


class ClassifyRequest(_Request):
    model: str | None = None
    input: str | list[str]
