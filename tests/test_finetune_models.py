"""Fine-tuning models: the classification head (last-token pooling under left and right padding,
BERT [CLS] parity with transformers, mean pooling, metrics), and FinetunedLM packing (block-diagonal
attention: a packed batch computes each example as it is alone)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from zeroforge.errors import ConfigError
from zeroforge.models.causal_lm import FinetunedLM
from zeroforge.models.classifier import (
    ClassifierConfig,
    SequenceClassifier,
    classification_metrics,
    last_token_index,
)
from zeroforge.registry import create_model
from zeroforge.schema import from_dict


def randomized(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = create_model(name, **overrides)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if pname.endswith("norm.weight") else 0.0))
    return model.eval()


SEQS = [[5, 9, 3, 7, 11], [4, 2], [8, 8, 8, 1]]


def padded(seqs, side: str, pad: int = 0):
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(T - len(s), T) if side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s)
        mask[i, sl] = 1
    return ids, mask


def test_last_token_index_under_left_and_right_padding():
    _, right = padded(SEQS, "right")
    _, left = padded(SEQS, "left")
    assert last_token_index(right).tolist() == [4, 1, 3]
    assert last_token_index(left).tolist() == [4, 4, 4]


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_decoder_last_token_pooling_matches_each_sequence_alone(name, side):
    model = SequenceClassifier.from_body(randomized(name), n_labels=3, dropout=0.0).eval()
    assert model.config.pooling == "last"
    ids, mask = padded(SEQS, side, pad=63)  # a pad id that is a real token: only the mask may hide it
    with torch.no_grad():
        batch = model(ids, attention_mask=mask).logits
        alone = torch.cat([model(torch.tensor([s])).logits for s in SEQS])
        # and the pooled state is the body's hidden state at the last real token
        hidden = model.hidden_states(ids, mask)
        picked = hidden[torch.arange(3), last_token_index(mask)]
        torch.testing.assert_close(model.score(picked), batch)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    if side == "right":  # pooling the last column would read padding: must differ for short rows
        with torch.no_grad():
            last_col = model.score(model.hidden_states(ids, mask)[:, -1])
        assert not torch.allclose(last_col[1], alone[1], atol=1e-3)


def test_bert_cls_pooling_matches_transformers_sequence_classification():
    transformers = pytest.importorskip("transformers")
    body = randomized("bert-test")
    model = SequenceClassifier.from_body(body, n_labels=3, pooling="cls", dropout=0.0).eval()
    from hf_twins import hf_bert_config

    hf_config = hf_bert_config(dataclasses.replace(body.config, n_labels=3), attn_implementation="sdpa")
    hf = transformers.BertForSequenceClassification(hf_config).eval()
    # our BERT block names differ from HF's inside a block: go through the weights key map
    from zeroforge.weights.hf import hf_state_dict

    state = {k.removeprefix("bert."): v for k, v in hf_state_dict(body).items() if k.startswith("bert.")}
    hf.bert.load_state_dict(state, strict=False)
    with torch.no_grad():
        hf.classifier.weight.copy_(model.score.weight)
        hf.classifier.bias.copy_(model.score.bias)
        ids, mask = padded(SEQS, "right")
        torch.testing.assert_close(
            model(ids, attention_mask=mask).logits, hf(ids, attention_mask=mask).logits, atol=1e-5, rtol=1e-5
        )


def test_mean_pooling_averages_real_tokens_only():
    model = SequenceClassifier.from_body(
        randomized("bert-test"), n_labels=2, pooling="mean", dropout=0.0
    ).eval()
    ids, mask = padded(SEQS, "right")
    with torch.no_grad():
        hidden = model.hidden_states(ids, mask)
        expected = torch.stack([hidden[i, : len(s)].mean(0) for i, s in enumerate(SEQS)])
        torch.testing.assert_close(model(ids, attention_mask=mask).logits, model.score(expected))


def test_loss_and_metrics_against_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [5.0, 1.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    m = classification_metrics(logits, labels)
    pred = logits.argmax(-1)
    assert float(m["accuracy"][0]) / m["accuracy"][1] == sklearn.accuracy_score(labels, pred)
    assert float(m["f1"][0]) / float(m["f1"][1]) == pytest.approx(sklearn.f1_score(labels, pred))


def test_classifier_config_round_trip_rebuilds_the_same_model():
    from zeroforge.registry import config_to_dict

    model = SequenceClassifier.from_body(randomized("llama-tiny"), n_labels=4, label_names=list("abcd"))
    config = from_dict(ClassifierConfig, config_to_dict(model.config), "model")
    rebuilt = create_model("classifier", **config_to_dict(config))
    rebuilt.load_state_dict(model.state_dict())  # same names and shapes
    assert rebuilt.config.label_names == ["a", "b", "c", "d"]
    assert "backbone.lm_head.weight" not in model.state_dict()  # the LM head is gone
    with pytest.raises(ConfigError, match="finetune.pooling: 'cls' does not suit a llama body"):
        SequenceClassifier.from_body(randomized("llama-tiny"), n_labels=2, pooling="cls")
    with pytest.raises(ConfigError, match="cannot be a classifier body"):
        SequenceClassifier.from_body(create_model("lstm-tiny"), 2)


# ----------------------------------------------------------------------------- packing


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_packed_rows_compute_each_example_as_if_alone(name):
    model = FinetunedLM.wrap(randomized(name)).eval()
    examples = [[3, 4, 5, 6], [7, 8, 9], [10, 11, 12, 13, 14]]
    ids = torch.tensor([sum(examples, [])])
    seg = torch.tensor([[k + 1 for k, e in enumerate(examples) for _ in e]])
    with torch.no_grad():
        packed = model(ids, segment_ids=seg).logits[0]
        start = 0
        for e in examples:
            alone = model(torch.tensor([e])).logits[0]
            torch.testing.assert_close(packed[start : start + len(e)], alone, atol=1e-5, rtol=1e-5)
            start += len(e)
        # without the block-diagonal mask the later examples would see the earlier ones
        plain = model(ids).logits[0]
        assert not torch.allclose(plain[4:7], packed[4:7], atol=1e-3)


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_loss_on_labelled_positions_only_equals_full_logits_cross_entropy(name):
    base = randomized(name)
    ids = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(5))
    labels = torch.full((3, 16), -100)
    labels[0, 10:] = ids[0, 10:]
    labels[2, 3:6] = ids[2, 3:6]
    with torch.no_grad():
        expected = base(ids, labels=labels).loss
        full_logits = base(ids).logits
    model = FinetunedLM.wrap(base).eval()
    with torch.no_grad():
        assert model(ids, labels=labels).logits is None  # fused_loss (the default): no logits held
        model.config.fused_loss = False
        out = model(ids, labels=labels)
        assert out.logits.shape == (9, 64)
        torch.testing.assert_close(out.logits, full_logits[labels != -100])
        torch.testing.assert_close(out.loss, expected)
        model.config.fused_loss = True
        torch.testing.assert_close(model(ids, labels=labels).loss, expected)
        torch.testing.assert_close(model(ids).logits, full_logits)
        with model.plain_model() as plain:
            torch.testing.assert_close(plain(ids).logits, full_logits)
        assert model.output_layer is model.model.lm_head  # the model is wrapped, not altered
        restored = model.merged()
        torch.testing.assert_close(restored(ids).logits, full_logits)
    assert set(restored.state_dict()) == set(randomized(name).state_dict())


def lora_finetuned(name: str) -> FinetunedLM:
    """A FinetunedLM with LoRA on every Linear and non-zero B (so A gets a gradient too)."""
    from zeroforge.modules.lora import LoRAConfig, apply_lora, mark_trainable

    model = FinetunedLM.wrap(randomized(name).train())
    apply_lora(model.model, LoRAConfig(rank=4, alpha=8.0, target_modules=["all-linear"]))
    torch.manual_seed(3)
    for p in model.parameters():
        if p.requires_grad and p.dim() == 2 and not p.any():
            torch.nn.init.normal_(p, std=0.1)
    mark_trainable(model)
    return model


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
@pytest.mark.parametrize("lora", [False, True])
def test_fused_loss_gives_the_plain_loss_and_gradients(name, lora):
    """The chunked output layer + cross-entropy (default) against full logits + F.cross_entropy,
    for full fine-tuning (the tied output weight gets a gradient) and LoRA (it is frozen)."""
    ids = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(5))
    labels = ids.roll(-1, dims=1)
    labels[:, -1] = -100
    labels[1, :5] = -100
    grads = []
    for fused in (True, False):
        model = lora_finetuned(name) if lora else FinetunedLM.wrap(randomized(name).train())
        model.config.fused_loss = fused
        loss = model(ids, labels=labels).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (fused_loss, fused_grads), (plain_loss, plain_grads) = grads
    torch.testing.assert_close(fused_loss, plain_loss)
    assert fused_grads.keys() == plain_grads.keys() and len(fused_grads) > 0
    for key in plain_grads:
        torch.testing.assert_close(fused_grads[key], plain_grads[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_activation_checkpointing_gives_the_same_lora_gradients(name):
    """distributed.activation_checkpointing (the memory-lean LoRA setting) recomputes each block in
    backward: the loss and every adapter gradient are those of the plain model."""
    from zeroforge.train.distributed import checkpoint_activations

    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(7))
    labels = ids.roll(-1, dims=1)
    results = []
    for checkpointed in (False, True):
        model = lora_finetuned(name)
        if checkpointed:
            assert checkpoint_activations(model) == len(model.blocks)
        loss = model(ids, labels=labels).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (plain_loss, plain), (ckpt_loss, ckpt) = results
    torch.testing.assert_close(ckpt_loss, plain_loss)
    assert plain.keys() == ckpt.keys()
    for key in plain:
        torch.testing.assert_close(ckpt[key], plain[key], msg=key)


@pytest.mark.parametrize("tied", [True, False])
def test_checkpoints_with_the_output_layer_on_the_wrapper_still_load(tmp_path, tied):
    """A FinetunedLM checkpoint that stored the output layer as ``lm_head.*`` (on the wrapper, not
    inside the model) loads into ``model.lm_head``: by ``load_state_dict`` and from model files."""
    from safetensors.torch import save_file

    from zeroforge.train.checkpoint import load_model_files, save_model_files

    model = FinetunedLM.wrap(randomized("llama-tiny", tie_word_embeddings=tied))
    old_names = {
        ("lm_head.weight" if k == "model.lm_head.weight" else k): v.clone()
        for k, v in model.state_dict().items()
    }
    assert "model.lm_head.weight" not in old_names
    rebuilt = FinetunedLM.wrap(randomized("llama-tiny", seed=9, tie_word_embeddings=tied))
    rebuilt.load_state_dict(old_names)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(ids).logits, model(ids).logits)
    save_model_files(tmp_path, model, None, hf=False)  # config.json (+ the new names, replaced below)
    if tied:  # safetensors stores a shared tensor once, under the name it kept then
        del old_names["model.model.embed_tokens.weight"]
    save_file({k: v.contiguous() for k, v in old_names.items()}, tmp_path / "model.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(load_model_files(tmp_path)(ids).logits, model(ids).logits)
