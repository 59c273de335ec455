"""BLEU written out equals sacrebleu's corpus BLEU; translation_scores reports sacrebleu's numbers."""

from __future__ import annotations

import pytest

sacrebleu = pytest.importorskip("sacrebleu")

from zeroforge.errors import DataError  # noqa: E402
from zeroforge.eval.bleu import corpus_bleu, translation_scores  # noqa: E402

HYPS = [
    "En el principio creó Dios los cielos y la tierra.",
    "Y la tierra estaba vacía, y las tinieblas sobre el abismo.",
    "Porque de tal manera amó Dios al mundo.",
    "Jesús lloró.",
    "Bienaventurados los pobres",
]
REFS = [
    "EN el principio crió Dios los cielos y la tierra.",
    "Y la tierra estaba desordenada y vacía, y las tinieblas estaban sobre la haz del abismo.",
    "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito.",
    "Y lloró Jesús.",
    "Bienaventurados los pobres en espíritu: porque de ellos es el reino de los cielos.",
]


@pytest.mark.parametrize("n", [5, 4, 1])
def test_written_out_bleu_equals_sacrebleu(n: int) -> None:
    expected = sacrebleu.corpus_bleu(HYPS[:n], [REFS[:n]]).score
    assert corpus_bleu(HYPS[:n], REFS[:n]) == pytest.approx(expected, abs=1e-9)


def test_translation_scores_are_sacrebleus_with_signatures() -> None:
    scores = translation_scores(HYPS, REFS)
    assert scores["bleu"] == round(sacrebleu.corpus_bleu(HYPS, [REFS]).score, 2)
    assert scores["chrf"] == round(sacrebleu.corpus_chrf(HYPS, [REFS]).score, 2)
    assert "tok:13a" in scores["bleu_signature"] and "nrefs:1" in scores["bleu_signature"]
    assert "nc:6" in scores["chrf_signature"] and "nw:0" in scores["chrf_signature"]
    assert translation_scores(REFS, REFS)["bleu"] == 100.0


def test_mismatched_lengths_are_one_line_errors() -> None:
    with pytest.raises(DataError, match="2 hypotheses for 1 references"):
        translation_scores(["a", "b"], ["a"])
