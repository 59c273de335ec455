"""Chat: templates render as transformers' apply_chat_template renders them; a session keeps the
conversation, streams, resets; the REPL's /reset and /exit; ``zeroforge chat`` on a saved model."""

from __future__ import annotations

import io

import pytest
import torch

from zeroforge.chat import ChatSession, chat_loop
from zeroforge.cli import build_parser
from zeroforge.errors import ZeroforgeError
from zeroforge.generation import generate
from zeroforge.registry import create_model
from zeroforge.tokenizers import PretrainedTokenizer
from zeroforge.tokenizers.chat_template import render_chat
from zeroforge.weights import save_pretrained

transformers = pytest.importorskip("transformers")

# SmolLM2-Instruct's template, as its GGUF carries it
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama-2/Mistral style: bos_token, raise_exception, loop controls, whitespace control
LLAMA2 = """{{ bos_token }}
{% for message in messages %}
    {% if message['role'] == 'system' %}{% continue %}{% endif %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if message['role'] == 'user' %}
        {{ '[INST] ' + message['content'] | trim + ' [/INST]' }}
    {% else %}
        {{ ' ' + message['content'] | trim + eos_token }}
    {% endif %}
{% endfor %}"""
# tojson and a namespace, as tool-calling templates use
TOOLS = (
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
    "{{ m | tojson }}\n{% endfor %}{{ ns.n }}{% if add_generation_prompt %}>>{% endif %}"
)
MESSAGES = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "  What's 2+2? café  "},
]


def hf_tokenizer():
    from tokenizers import Tokenizer, models

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1, "</s>": 2}, unk_token="<unk>"))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.mark.parametrize("template", [CHATML, LLAMA2, TOOLS])
@pytest.mark.parametrize("generation_prompt", [True, False])
def test_render_matches_transformers_apply_chat_template(template, generation_prompt):
    reference = hf_tokenizer().apply_chat_template(
        MESSAGES, chat_template=template, tokenize=False, add_generation_prompt=generation_prompt
    )
    ours = render_chat(
        template, MESSAGES, add_generation_prompt=generation_prompt, bos_token="<s>", eos_token="</s>"
    )
    assert ours == reference


def test_template_errors_are_one_line():
    bad = [{"role": "assistant", "content": "first"}]
    with pytest.raises(ZeroforgeError, match="chat template: Conversation roles must alternate"):
        render_chat(LLAMA2, bad, bos_token="<s>", eos_token="</s>")
    with pytest.raises(ZeroforgeError, match="chat template:"):
        render_chat("{% for %}", MESSAGES)


# ----------------------------------------------------------------------------- sessions


def chat_model() -> tuple[torch.nn.Module, PretrainedTokenizer]:
    from tokenizers import AddedToken

    from zeroforge.tokenizers import train_bpe

    base = train_bpe("the user asked and the assistant answered politely. " * 30, vocab_size=300)
    tok = base.tokenizer
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>")])
    tokenizer = PretrainedTokenizer(tok, {"bos": "<|im_start|>", "eos": "<|im_end|>"}, CHATML)
    torch.manual_seed(0)
    model = create_model("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=256).eval()
    return model, tokenizer


def test_session_renders_history_generates_and_resets():
    model, tok = chat_model()
    session = ChatSession(model, tok, max_new_tokens=8)
    pieces: list[str] = []
    first = session.send("hello", stream=pieces.append)
    assert "".join(pieces) == first
    expected_prompt = render_chat(CHATML, [{"role": "user", "content": "hello"}], True)
    assert first == generate(model, tok, expected_prompt, max_new_tokens=8, temperature=0)
    second = session.send("and then?")
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert (
        session.messages[1]["content"] == first.strip() and session.messages[3]["content"] == second.strip()
    )
    assert session.prompt().count("<|im_start|>user") == 2  # history is in the next prompt
    session.reset()
    assert session.messages == []
    system = ChatSession(model, tok, system="Be brief.")
    assert system.prompt().startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_failed_turn_leaves_history_unchanged(monkeypatch):
    model, tok = chat_model()
    session = ChatSession(model, tok, max_new_tokens=4)
    session.send("one")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("zeroforge.generation.generate", boom)
    with pytest.raises(KeyboardInterrupt):
        session.send("two")
    assert len(session.messages) == 2


def test_model_without_template_is_refused():
    model, tok = chat_model()
    tok.chat_template = None
    with pytest.raises(ZeroforgeError, match="has no chat template"):
        ChatSession(model, tok)


def test_loop_handles_reset_and_exit():
    model, tok = chat_model()
    session = ChatSession(model, tok, max_new_tokens=4)
    sent: list[str] = []
    original = session.send

    def record(text, stream=None):
        sent.append(text)
        return original(text, stream)

    session.send = record  # type: ignore[method-assign]
    out = io.StringIO()
    chat_loop(session, iter(["hi\n", "\n", "/reset\n", "again\n", "/exit\n", "never\n"]), out.write)
    assert sent == ["hi", "again"]
    assert "(conversation reset)" in out.getvalue()
    assert [m["content"] for m in session.messages if m["role"] == "user"] == ["again"]


def test_chat_cli_on_a_saved_model(tmp_path, monkeypatch, capsys):
    model, tok = chat_model()
    save_pretrained(model, tok, tmp_path / "m")
    args = build_parser().parse_args(
        ["chat", str(tmp_path / "m"), "--temperature", "0", "--max-new-tokens", "5"]
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\n/exit\n"))
    assert args.func(args) == 0
    out = capsys.readouterr().out
    reply = generate(
        model, tok, render_chat(CHATML, [{"role": "user", "content": "hello"}]), 5, temperature=0
    )
    assert out.startswith("chat with ") and f"> {reply}\n> " in out
