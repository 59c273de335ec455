"""Why a small BERT's masked-LM accuracy stalls: two measurements behind docs/results.md (BERT section).

    python bench/bert_diagnostics.py neighbours [--prepared DIR]   # what the two neighbours alone predict
    python bench/bert_diagnostics.py attention RUN [--prepared DIR] # does the model attend by position?
    python bench/bert_diagnostics.py lexical [--prepared DIR]      # NSP from word overlap alone

``neighbours``: a count-based reference on the held-out masked positions the trainer scores (the
same pairs, the same fixed 15% masks). For every training pair, count which token sits between each
(left, right) pair of tokens; predict a masked token as the most frequent middle token of its two
neighbours in the masked input, backing off to the left neighbour alone, then the right one, then
the most frequent token. No model, no training: how much the local context gives.

``attention``: for each head of a trained BERT, the mean attention weight on the token at offsets
-2..2 from each position (1 / pair length if attention were uniform), and the spread of the learned
position table against the word embeddings. A model that has learned word order puts most of some
head's weight on a neighbour.

``lexical``: how much of next-sentence prediction word overlap alone solves. One feature per pair,
the tf-idf cosine between segment A's and segment B's WordPiece ids (idf and a logistic regression
fitted on the training pairs), scored on the held-out pairs. Longer pairs carry more overlap, so
this reference says how hard a given ``block_size`` makes the NSP task.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import torch

DEFAULT_PREPARED = "kjv-mlm_nsp-wordpiece-4096-128"


def prepared_dir(arg: str | None) -> Path:
    from zeroforge.datasets import cache_dir

    return Path(arg) if arg else cache_dir() / "prepared" / DEFAULT_PREPARED


def held_out_batches(directory: Path):
    from zeroforge.data.masking import MaskingSpec, fixed_batches
    from zeroforge.data.mlm import load_mlm_nsp

    _, tok, train, val = load_mlm_nsp(directory)
    spec = MaskingSpec.from_tokenizer(tok, 0.15)
    return tok, spec, train, fixed_batches(val, spec, 16)  # every held-out pair, the trainer's masks


def neighbours(args: argparse.Namespace) -> None:
    tok, spec, train, batches = held_out_batches(prepared_dir(args.prepared))
    middle: dict[tuple[int, int], collections.Counter] = collections.defaultdict(collections.Counter)
    after: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    before: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    unigram: collections.Counter = collections.Counter()
    for i in range(len(train)):
        x = train.example(i).tolist()
        for j in range(1, len(x) - 1):
            middle[(x[j - 1], x[j + 1])][x[j]] += 1
            after[x[j - 1]][x[j]] += 1
            before[x[j + 1]][x[j]] += 1
            unigram[x[j]] += 1
    for special in tok.special_ids():
        unigram.pop(special, None)
    most_frequent = unigram.most_common(1)[0][0]
    hits = total = 0
    for batch in batches:
        inputs, labels = batch["input_ids"], batch["labels"]
        for row, col in zip(*torch.nonzero(labels != -100, as_tuple=True), strict=True):
            row, col = int(row), int(col)
            left = int(inputs[row, col - 1])
            right = int(inputs[row, col + 1]) if col + 1 < inputs.size(1) else spec.pad_id
            if (left, right) in middle:
                guess = middle[(left, right)].most_common(1)[0][0]
            elif left in after and left != spec.mask_id:
                guess = after[left].most_common(1)[0][0]
            elif right in before and right != spec.mask_id:
                guess = before[right].most_common(1)[0][0]
            else:
                guess = most_frequent
            hits += guess == int(labels[row, col])
            total += 1
    print(f"neighbour lookup: {hits / total:.4f} of {total} held-out masked positions")


def lexical(args: argparse.Namespace) -> None:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from zeroforge.data.mlm import load_mlm_nsp

    _, _, train, val = load_mlm_nsp(prepared_dir(args.prepared))

    def segments(pairs) -> tuple[list[str], list[str]]:  # [CLS] A [SEP] B [SEP] -> "ids of A", "ids of B"
        a, b = [], []
        for i in range(len(pairs)):
            x, len_a = pairs.example(i), int(pairs.len_a[i])
            a.append(" ".join(map(str, x[1 : len_a - 1])))
            b.append(" ".join(map(str, x[len_a:-1])))
        return a, b

    (train_a, train_b), (val_a, val_b) = segments(train), segments(val)
    tfidf = TfidfVectorizer(token_pattern=r"\S+", sublinear_tf=True).fit(train_a + train_b)

    def cosine(a: list[str], b: list[str]) -> np.ndarray:  # rows are L2-normalised: the dot product
        return np.asarray(tfidf.transform(a).multiply(tfidf.transform(b)).sum(1))

    x_train, x_val = cosine(train_a, train_b), cosine(val_a, val_b)
    classifier = LogisticRegression().fit(x_train, train.next_label)
    length = np.diff(val.offsets).mean()
    print(
        f"tf-idf cosine of A and B -> logistic regression: NSP accuracy {classifier.score(x_val, val.next_label):.4f} "
        f"on {len(val)} held-out pairs (mean length {length:.1f} tokens), "
        f"{classifier.score(x_train, train.next_label):.4f} on {len(train)} training pairs"
    )


@torch.no_grad()
def attention(args: argparse.Namespace) -> None:
    import zeroforge as zf
    from zeroforge.modules.attention import split_heads

    model, _ = zf.load_pretrained(args.run)
    model.eval()
    _, spec, _, batches = held_out_batches(prepared_dir(args.prepared))
    batch = batches[0]
    bert = model.bert
    T = batch["input_ids"].size(1)
    x = bert.embeddings(batch["input_ids"], batch["token_type_ids"], torch.arange(T)[None])
    real = batch["attention_mask"].bool()[:, None, None, :]  # (B, 1, 1, T)
    uniform = 1 / batch["attention_mask"].sum(-1).float().mean().item()
    print(f"uniform attention: {uniform:.3f} per key")
    # The pairwise comparison NSP from word overlap needs: how much a segment-B word attends to the
    # same word in segment A (specials excluded), against the share uniform attention would give.
    ids, types = batch["input_ids"], batch["token_type_ids"]
    word = batch["attention_mask"].bool() & ~torch.as_tensor(spec.special[ids.numpy()])
    segment_a, segment_b = word & (types == 0), word & (types == 1)
    same_word_in_a = (ids[:, :, None] == ids[:, None, :]) & segment_b[:, :, None] & segment_a[:, None, :]
    from_b = segment_b & same_word_in_a.any(-1)  # B's words that occur in A
    lengths = batch["attention_mask"].sum(-1, keepdim=True).float()  # (B, 1)
    match_uniform = (same_word_in_a.sum(-1) / lengths)[from_b].mean().item()
    print(f"{from_b.sum().item()} of {segment_b.sum().item()} segment-B words also occur in segment A")
    for index, layer in enumerate(bert.encoder.layer):
        attn = layer.attention
        q, k = split_heads(attn.query(x), attn.n_head), split_heads(attn.key(x), attn.n_head)
        weights = (
            ((q @ k.transpose(-1, -2)) / q.size(-1) ** 0.5).masked_fill(~real, float("-inf")).softmax(-1)
        )
        for head in range(weights.size(1)):
            head_weights = weights[:, head]  # (B, T, T)
            by_offset = {
                off: head_weights.diagonal(offset=off, dim1=-2, dim2=-1).mean().item()
                for off in (-2, -1, 0, 1, 2)
            }
            match = (
                (head_weights * same_word_in_a).sum(-1)[from_b].mean().item()
            )  # B's words -> same word in A
            cls_to_b = head_weights[:, 0][segment_b].sum().item() / len(head_weights)
            print(
                f"layer {index} head {head}: "
                + "  ".join(f"{off:+d}: {share:.3f}" for off, share in by_offset.items())
                + f"  B->same word in A: {match:.3f} (uniform {match_uniform:.3f})"
                + f"  [CLS]->B: {cls_to_b:.3f}"
            )
        x = layer(x, real)
    emb = bert.embeddings
    print(
        f"std of the position table {emb.position_embeddings.weight.std():.4f}, "
        f"of the word embeddings {emb.word_embeddings.weight.std():.4f} "
        f"(initializer_range {model.config.initializer_range}, position_init {model.config.position_init})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    n = sub.add_parser("neighbours")
    n.add_argument("--prepared", help=f"prepared mlm_nsp folder (default: the cache's {DEFAULT_PREPARED})")
    a = sub.add_parser("attention")
    a.add_argument("run", help="a BERT run directory or model folder")
    a.add_argument("--prepared")
    w = sub.add_parser("lexical")
    w.add_argument("--prepared", help=f"prepared mlm_nsp folder (default: the cache's {DEFAULT_PREPARED})")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"neighbours": neighbours, "attention": attention, "lexical": lexical}[args.what](args)


if __name__ == "__main__":
    main()
