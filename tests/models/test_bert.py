"""BERT: parity with transformers' BertForPreTraining / BertForSequenceClassification, padding
invariance, SDPA == naive, presets vs HF parameter counts, overfitting both objectives, errors."""

import re

import pytest
import torch

from zeroforge.errors import ConfigError, ZeroforgeError
from zeroforge.models.bert import BertConfig, BertForPreTraining, BertForSequenceClassification
from zeroforge.modules.pooling import mean_pool
from zeroforge.registry import create_model, model_config
from zeroforge.train.checkpoint import load_model_files, save_model_files

transformers = pytest.importorskip("transformers")
from hf_twins import hf_bert_config  # noqa: E402  (tests/hf_twins.py)


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: one thread is fastest, and 2-thread kernels crawl on a shared, loaded machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=40, vocab_size=70, dropout=0.0)

# HF BERT key -> ours, applied in order (inside a block the shared modules' names differ).
HF_TO_OURS = [
    (r"\.attention\.self\.(query|key|value)\.", r".attention.\1."),
    (r"\.attention\.output\.dense\.", ".attention.out."),
    (r"\.attention\.output\.LayerNorm\.", ".ln_1."),
    (r"\.intermediate\.dense\.", ".mlp.c_fc."),
    (r"\.output\.dense\.", ".mlp.c_proj."),
    (r"\.output\.LayerNorm\.", ".ln_2."),
    (r"^cls\.predictions\.decoder\.bias$", "cls.predictions.bias"),
]


def ours_key(hf_key: str) -> str:
    for pattern, repl in HF_TO_OURS:
        hf_key = re.sub(pattern, repl, hf_key)
    return hf_key


def copy_to_hf(model: torch.nn.Module, hf: torch.nn.Module) -> torch.nn.Module:
    """Copy our weights into ``hf`` key by key; every HF tensor must have a counterpart of equal shape."""
    ours = model.state_dict()
    with torch.no_grad():
        for key, value in hf.state_dict().items():
            source = ours[ours_key(key)]
            assert source.shape == value.shape, key
            value.copy_(source)
    return hf


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Weights far from BERT's small init, so every layer (GELU, LayerNorm affine, biases) matters."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_scale = ("LayerNorm" in name or ".ln_" in name) and name.endswith("weight")
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (1.0 if is_norm_scale else 0.0))
    return model


def tiny(**overrides) -> BertForPreTraining:
    torch.manual_seed(0)
    return randomize(BertForPreTraining(BertConfig(**{**TINY, **overrides}))).eval()


def batch(B: int = 3, T: int = 24, vocab: int = 70, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (B, T), generator=g)
    lengths = torch.tensor([T, T - 7, T - 15])[:B]
    attention_mask = (torch.arange(T)[None] < lengths[:, None]).long()  # (B, T), right padding
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    token_type_ids = (torch.arange(T)[None] >= (lengths[:, None] // 2)).long() * attention_mask
    labels = torch.full((B, T), -100)
    pick = (torch.rand(B, T, generator=g) < 0.3) & attention_mask.bool()
    labels[pick] = torch.randint(0, vocab, (int(pick.sum()),), generator=g)
    nsp = torch.tensor([0, 1, 1])[:B]
    return input_ids, attention_mask, token_type_ids, labels, nsp


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_pretraining_logits_and_loss_match_transformers(attn_implementation):
    model = tiny()
    hf = copy_to_hf(
        model, transformers.BertForPreTraining(hf_bert_config(model.config, attn_implementation)).eval()
    )
    ids, mask, types, labels, nsp = batch()
    with torch.no_grad():
        ours = model(ids, attention_mask=mask, token_type_ids=types)
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types)
        ours_l = model(ids, mask, types, labels=labels, next_sentence_label=nsp)
        theirs_l = hf(
            input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels, next_sentence_label=nsp
        )
    real = mask.bool()  # HF's padded positions differ only in what they attend; compare real ones
    torch.testing.assert_close(ours.logits[real], theirs.prediction_logits[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.nsp_logits, theirs.seq_relationship_logits, atol=1e-4, rtol=1e-4)
    # with labels our logits are only the masked rows
    torch.testing.assert_close(
        ours_l.logits, theirs_l.prediction_logits[labels != -100], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(ours_l.loss, theirs_l.loss, atol=1e-5, rtol=1e-5)
    # metrics: exact counts, recomputed from HF's logits
    hf_masked = theirs_l.prediction_logits[labels != -100]
    correct, n = ours_l.metrics["mlm_accuracy"]
    assert n == int((labels != -100).sum()) and int(correct) == int(
        (hf_masked.argmax(-1) == labels[labels != -100]).sum()
    )
    nsp_correct, nsp_n = ours_l.metrics["nsp_accuracy"]
    assert nsp_n == 3 and int(nsp_correct) == int((theirs.seq_relationship_logits.argmax(-1) == nsp).sum())


def test_classifier_matches_transformers():
    torch.manual_seed(0)
    model = randomize(BertForSequenceClassification(BertConfig(**TINY, n_labels=3))).eval()
    hf = transformers.BertForSequenceClassification(hf_bert_config(model.config)).eval()
    copy_to_hf(model, hf)
    ids, mask, types, _, _ = batch()
    labels = torch.tensor([2, 0, 1])
    with torch.no_grad():
        ours = model(ids, mask, types, labels=labels)
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    assert ours.metrics["accuracy"][1] == 3


def test_sentence_embedding_matches_mean_pooled_transformers_hidden_states():
    model = tiny()
    hf = copy_to_hf(model, transformers.BertForPreTraining(hf_bert_config(model.config)).eval())
    ids, mask, types, _, _ = batch()
    with torch.no_grad():
        ours = model.sentence_embedding(ids, mask, types)
        hidden = hf.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    m = mask[..., None].float()
    torch.testing.assert_close(ours, (hidden * m).sum(1) / m.sum(1), atol=1e-4, rtol=1e-4)
    assert torch.equal(mean_pool(hidden, None), hidden.mean(1))


@pytest.mark.parametrize("impl", ["sdpa", "naive"])
def test_padding_does_not_change_real_positions(impl):
    model = tiny(attention=impl)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(5, 70, (1, 11), generator=g)
    types = torch.tensor([[0] * 6 + [1] * 5])
    labels = torch.full((1, 11), -100)
    labels[0, [2, 7]] = torch.tensor([9, 10])
    with torch.no_grad():
        ref = model(ids, torch.ones_like(ids), types)
        ref_l = model(ids, torch.ones_like(ids), types, labels=labels, next_sentence_label=torch.tensor([1]))
        for pad in (1, 9):
            # garbage ids and segment ids at the padding: the mask alone must hide them
            pad_ids = torch.randint(0, 70, (1, pad), generator=g)
            pids = torch.cat([ids, pad_ids], 1)
            pmask = torch.cat([torch.ones_like(ids), torch.zeros_like(pad_ids)], 1)
            ptypes = torch.cat([types, torch.ones_like(pad_ids)], 1)
            out = model(pids, pmask, ptypes)
            torch.testing.assert_close(out.logits[:, :11], ref.logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.nsp_logits, ref.nsp_logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                model.sentence_embedding(pids, pmask, ptypes),
                model.sentence_embedding(ids, torch.ones_like(ids), types),
                atol=1e-5,
                rtol=1e-5,
            )
            plabels = torch.cat([labels, torch.full((1, pad), -100)], 1)
            out_l = model(pids, pmask, ptypes, labels=plabels, next_sentence_label=torch.tensor([1]))
            torch.testing.assert_close(out_l.loss, ref_l.loss, atol=1e-5, rtol=1e-5)


def test_padding_changes_outputs_without_the_mask():
    """The invariance above is the mask's doing: without it the padding leaks into real positions."""
    model = tiny()
    ids = torch.randint(5, 70, (1, 11), generator=torch.Generator().manual_seed(5))
    pids = torch.cat([ids, torch.full((1, 4), 3)], 1)
    with torch.no_grad():
        a = model(ids).logits
        b = model(pids).logits[:, :11]
    assert (a - b).abs().max() > 1e-3


def test_sdpa_matches_naive_in_a_batch_with_padding():
    ids, mask, types, _, _ = batch()
    sdpa, naive = tiny(attention="sdpa"), tiny(attention="naive")
    with torch.no_grad():
        a, b = sdpa(ids, mask, types), naive(ids, mask, types)
    real = mask.bool()
    torch.testing.assert_close(a.logits[real], b.logits[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.nsp_logits, b.nsp_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "name", ["bert-base", "bert-large", "MiniLM-L6-H384", "bert-tiny", "bert-mini", "bert-test"]
)
def test_presets_have_transformers_shapes_and_parameter_counts(name):
    cfg = model_config(name)
    with torch.device("meta"):
        ours = create_model(name)
        hf = transformers.BertForPreTraining(hf_bert_config(cfg))
    theirs = {ours_key(k): v.shape for k, v in hf.state_dict().items()}
    assert theirs == {k: v.shape for k, v in ours.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


def test_known_sizes():
    # bert-base-uncased BertForPreTraining has 110,106,428 parameters; all-MiniLM-L6-v2's BertModel 22,713,216
    with torch.device("meta"):
        assert sum(p.numel() for p in create_model("bert-base").parameters()) == 110_106_428
        assert sum(p.numel() for p in create_model("MiniLM-L6-H384").bert.parameters()) == 22_713_216


def test_mlm_head_is_tied_and_survives_save_and_load(tmp_path):
    model = tiny()
    emb = model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.weight is emb
    save_model_files(tmp_path, model, None)
    loaded = load_model_files(tmp_path).eval()
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    ids, mask, types, _, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask, types).logits, model(ids, mask, types).logits)


def test_tiny_bert_overfits_a_batch_on_both_objectives():
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**TINY))
    ids, mask, types, labels, _ = batch(B=3, seed=2)
    nsp = torch.tensor([0, 1, 0])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(80):
        out = model(ids, mask, types, labels=labels, next_sentence_label=nsp)
        first = first if first is not None else out.loss.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(ids, mask, types, labels=labels, next_sentence_label=nsp)
    correct, n = out.metrics["mlm_accuracy"]
    assert int(correct) == n and int(out.metrics["nsp_accuracy"][0]) == 3
    assert out.loss.item() < 0.05 * first


def test_loss_of_one_objective_alone():
    model = tiny()
    ids, mask, types, labels, nsp = batch()
    with torch.no_grad():
        both = model(ids, mask, types, labels=labels, next_sentence_label=nsp)
        mlm = model(ids, mask, types, labels=labels)
        only_nsp = model(ids, mask, types, next_sentence_label=nsp)
    torch.testing.assert_close(both.loss, mlm.loss + only_nsp.loss)
    assert set(mlm.metrics) == {"mlm_loss", "mlm_accuracy"}
    assert set(only_nsp.metrics) == {"nsp_loss", "nsp_accuracy"}
    assert only_nsp.logits.shape == (3, 24, 70)
    assert model(ids).loss is None


def test_errors():
    with pytest.raises(ZeroforgeError, match="exceeds model block_size 40"):
        tiny()(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ConfigError, match="n_embd: must be divisible by n_head"):
        model_config("bert-test", n_embd=33)
    with pytest.raises(ConfigError, match="pad_token_id"):
        model_config("bert-test", pad_token_id=64)
    assert model_config("bert-test").max_position_embeddings == 64
    assert BertConfig(n_embd=64, n_head=4).intermediate_size == 256


def test_local_attention_init_ties_keys_to_queries_and_attends_nearby():
    """qk_init=tied + sinusoidal positions: W_k = W_q at init, and a head's attention on the tokens
    next to a position is well above its attention on far tokens (BertConfig.qk_init)."""
    from zeroforge.modules.attention import split_heads
    from zeroforge.modules.init import sinusoidal_positions

    config = dict(n_layer=2, n_head=2, n_embd=64, block_size=48, vocab_size=100, dropout=0.0)
    torch.manual_seed(0)
    plain = BertForPreTraining(BertConfig(**config)).eval()
    torch.manual_seed(0)
    local = BertForPreTraining(
        BertConfig(
            **config, position_init="sinusoidal", position_init_scale=0.2, qk_init="tied", qk_init_std=0.08
        )
    ).eval()
    attn = local.bert.encoder.layer[1].attention
    assert torch.equal(attn.query.weight, attn.key.weight) and abs(attn.query.weight.std() - 0.08) < 0.01
    torch.testing.assert_close(
        local.bert.embeddings.position_embeddings.weight, sinusoidal_positions(48, 64) * 0.2
    )
    assert set(local.state_dict()) == set(plain.state_dict())  # an init choice: same checkpoint layout

    ids = torch.randint(5, 100, (4, 48), generator=torch.Generator().manual_seed(1))

    def neighbour_vs_far(model):
        with torch.no_grad():
            x = model.bert.embeddings(ids, torch.zeros_like(ids), torch.arange(48)[None])
            a = model.bert.encoder.layer[0].attention
            q, k = split_heads(a.query(x), a.n_head), split_heads(a.key(x), a.n_head)
            w = ((q @ k.transpose(-1, -2)) / q.size(-1) ** 0.5).softmax(-1)  # (B, H, T, T)
            near = w.diagonal(offset=1, dim1=-2, dim2=-1).mean()
            far = w.diagonal(offset=20, dim1=-2, dim2=-1).mean()
        return (near / far).item()

    assert neighbour_vs_far(local) > 2.0
    assert neighbour_vs_far(plain) < 1.5  # BERT's own init: near-uniform attention

    torch.manual_seed(0)
    half = BertForPreTraining(BertConfig(**config, qk_init="tied", qk_init_std=0.08, qk_init_heads=1))
    attn = half.bert.encoder.layer[0].attention
    assert torch.equal(attn.query.weight[:32], attn.key.weight[:32])  # head 0 tied (head size 32)
    assert not torch.equal(attn.query.weight[32:], attn.key.weight[32:])  # head 1 as BERT
    assert abs(attn.key.weight[32:].std() - 0.02) < 0.005


def test_init_options_are_checked():
    with pytest.raises(ValueError, match="qk_init"):
        BertConfig(qk_init="identity")
    with pytest.raises(ValueError, match="position_init"):
        BertConfig(position_init="rotary")
    with pytest.raises(ValueError, match="qk_init_heads"):
        BertConfig(n_head=2, n_embd=64, qk_init_heads=3)


def test_init_options_for_cls_layers_and_the_nsp_weight():
    """position_init_cls=false keeps [CLS]'s position at BERT's start; qk_init_layers ties only the
    first layers; nsp_loss_weight scales the NSP term of the loss and nothing else."""
    from zeroforge.modules.init import sinusoidal_positions

    config = dict(n_layer=3, n_head=2, n_embd=64, block_size=48, vocab_size=100, dropout=0.0)
    torch.manual_seed(0)
    model = BertForPreTraining(
        BertConfig(
            **config,
            position_init="sinusoidal",
            position_init_scale=0.2,
            position_init_cls=False,
            qk_init="tied",
            qk_init_std=0.08,
            qk_init_layers=1,
        )
    )
    table = model.bert.embeddings.position_embeddings.weight
    torch.testing.assert_close(table[1:], sinusoidal_positions(48, 64)[1:] * 0.2)
    assert abs(table[0].std() - 0.02) < 0.01  # BERT's N(0, 0.02)
    tied = [
        torch.equal(layer.attention.query.weight, layer.attention.key.weight)
        for layer in model.bert.encoder.layer
    ]
    assert tied == [True, False, False]

    weighted = tiny(nsp_loss_weight=3.0)
    ids, mask, types, labels, nsp = batch()
    with torch.no_grad():
        both = weighted(ids, mask, types, labels=labels, next_sentence_label=nsp)
        mlm = weighted(ids, mask, types, labels=labels)
    nsp_loss = both.metrics["nsp_loss"][0] / len(ids)  # (sum over the batch, count)
    torch.testing.assert_close(both.loss, mlm.loss + 3.0 * nsp_loss)
    with pytest.raises(ValueError, match="nsp_loss_weight"):
        BertConfig(nsp_loss_weight=-1.0)
    with pytest.raises(ValueError, match="qk_init_layers"):
        BertConfig(n_layer=2, qk_init_layers=3)
