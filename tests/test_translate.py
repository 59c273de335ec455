"""zeroforge translate / evaluate on a translation run: batched translation, BLEU and chrF with
sacrebleu's signatures, and bad input as one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("sacrebleu")

from zeroforge.cli import main  # noqa: E402
from zeroforge.data.translation import train_translation_bpe  # noqa: E402
from zeroforge.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer  # noqa: E402
from zeroforge.translation import translate  # noqa: E402
from zeroforge.weights.files import save_model_files  # noqa: E402

EN = ["In the beginning God created the heavens.", "Jesus wept.", "The Lord is my shepherd."]
ES = ["EN el principio crió Dios los cielos.", "Y lloró Jesús.", "Jehová es mi pastor."]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny model with a real shared BPE, laid out like a translation run."""
    folder = tmp_path_factory.mktemp("run")
    tok = train_translation_bpe((EN + ES) * 10, vocab_size=300)
    torch.manual_seed(0)
    config = Seq2SeqConfig.from_name("transformer-tiny", vocab_size=tok.vocab_size)
    save_model_files(folder, Seq2SeqTransformer(config), tok)
    for split in ("val", "test"):
        (folder / f"{split}.src").write_text("".join(s + "\n" for s in EN), encoding="utf-8")
        (folder / f"{split}.tgt").write_text("".join(s + "\n" for s in ES), encoding="utf-8")
        (folder / f"{split}.ref").write_text("Gen 1:1\nJohn 11:35\nPs 23:1\n", encoding="utf-8")
    return folder


def test_batched_translation_equals_one_by_one(run_dir: Path) -> None:
    together = translate(run_dir, None, EN, num_beams=3, batch_size=2)
    alone = [translate(run_dir, None, [s], num_beams=3)[0] for s in EN]
    assert together == alone and len(together) == 3
    n_best = translate(run_dir, None, EN[:1], num_beams=3, n_best=3)[0]
    assert len(n_best) == 3 and n_best[0][0] == together[0]


def test_cli_translate_text_and_file(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["translate", str(run_dir), "--text", EN[0], "--text", EN[1], "--beams", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    source, out = tmp_path / "in.en", tmp_path / "out.es"
    source.write_text("\n".join(EN) + "\n", encoding="utf-8")
    assert main(["translate", str(run_dir), "--file", str(source), "--out", str(out), "--beams", "1"]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == translate(run_dir, None, EN, num_beams=1)


def test_cli_evaluate_prints_bleu_chrf_and_signatures(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(run_dir), "--beams", "1", "--beams", "2", "--sample", "John 11:35"]) == 0
    out = capsys.readouterr().out
    assert "test greedy: BLEU" in out and "test beam2: BLEU" in out
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp" in out and "nc:6|nw:0" in out
    assert "Y lloró Jesús." in out  # the sample's reference, printed with its translations
    metrics = json.loads((run_dir / "translation_metrics.json").read_text())
    assert set(metrics) >= {"greedy", "beam2", "samples"} and 0.0 <= metrics["greedy"]["chrf"] <= 100.0


def _fails(args: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_empty_source_line_is_a_one_line_error(run_dir: Path, tmp_path: Path, capsys) -> None:
    source = tmp_path / "in.en"
    source.write_text("Jesus wept.\n\nAmen.\n", encoding="utf-8")
    _fails(["translate", str(run_dir), "--file", str(source)], capsys, "in.en: line 2: empty source line")
    _fails(["translate", str(run_dir), "--text", "  "], capsys, "line 1: empty source line")


def test_bad_translation_inputs_are_one_line_errors(
    run_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a failed train leaves nothing behind in the working directory either
    _fails(["translate", str(run_dir)], capsys, "give --text TEXT (repeatable) or --file FILE")
    _fails(
        ["translate", str(run_dir), "--file", str(tmp_path / "nope.txt")], capsys, "nope.txt: no such file"
    )
    _fails(["evaluate", str(run_dir), "--sample", "Rev 99:1"], capsys, "'Rev 99:1' is not a verse")
    _fails(
        ["train", "data.objective=translation", "data.source=en-xx", "model.name=transformer-tiny"],
        capsys,
        "unknown language pair 'en-xx'",
    )
    assert not list(tmp_path.glob("runs/**/COMPLETE"))


def test_python_evaluate_scores_a_translation_run(run_dir: Path) -> None:
    from zeroforge.eval.evaluate import evaluate

    metrics = evaluate(run_dir)
    assert {"copy_source", "greedy", "beam4"} <= set(metrics) and metrics["sentences"] == 3
