"""Tiny random models for the server's tests (a chat model with a ChatML template, a BERT encoder) and
a live uvicorn server on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from zeroforge.registry import create_model

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEXT = "the user asked and the assistant answered politely. In the beginning God created the heaven. " * 20


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights far from the small init, so greedy decoding produces varied tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if name.endswith("norm.weight") else 0.0))
    return model.eval()


def chat_tokenizer():
    from tokenizers import AddedToken

    from zeroforge.tokenizers import PretrainedTokenizer, train_bpe

    tok = train_bpe(TEXT, vocab_size=300).tokenizer
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>")])
    return PretrainedTokenizer(tok, {"bos": "<|im_start|>", "eos": "<|im_end|>"}, CHATML)


def chat_model(family: str = "llama-tiny", seed: int = 0):
    tokenizer = chat_tokenizer()
    torch.manual_seed(seed)
    model = create_model(family, vocab_size=tokenizer.vocab_size, block_size=256)
    return randomized(model, seed), tokenizer


def bert_parts():
    from zeroforge.models.bert import BertConfig, BertForPreTraining
    from zeroforge.tokenizers import train_wordpiece

    tokenizer = train_wordpiece([TEXT], vocab_size=120)
    torch.manual_seed(0)
    model = BertForPreTraining(
        BertConfig(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=tokenizer.vocab_size)
    )
    return randomized(model), tokenizer


@contextmanager
def live_server(app) -> Iterator[str]:
    """``app`` on uvicorn in a thread, on a free port of 127.0.0.1; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
