"""OpenAI's API as far as this server speaks it: the request bodies it reads (pydantic; unknown fields
ignored), its error object, and the pieces of a completion answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class ApiError(Exception):
    """An error answered as OpenAI's JSON error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def parse(cls: type[BaseModel], data: dict[str, Any]) -> Any:
    """``data`` read as the request body ``cls``; the first validation error is answered with 400."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise ApiError(400, f"{where}: {first['msg']}", param=where or None) from None


def usage(prompt: int, completion: int) -> dict[str, int]:
    """The ``usage`` field of a completion: token counts of the prompt and the answer."""
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def choice(text: str | None, finish: str | None, chat: bool, delta: bool) -> dict[str, Any]:
    """One entry of ``choices``: a completion's ``text``, or a chat's ``message`` (``delta`` in a stream;
    ``text=None`` there is the empty delta that carries the finish reason)."""
    if not chat:
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    if delta:
        return {"index": 0, "delta": {} if text is None else {"content": text}, "finish_reason": finish}
    return {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}


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
