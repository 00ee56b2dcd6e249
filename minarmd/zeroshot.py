r"""Zero-shot evaluation sets: LAMBADA, WikiText2, PTB, WikiText103 and LM1B, through ``datasets``.

The ARMD paper (like MDLM and SEDD before it) trains on OpenWebText and reports perplexity on five
corpora the model never saw. Most of them are distributed **tokenised** — "actor , television" and
"1 @,@ 000" instead of "actor, television" and "1,000" — which a GPT-2 tokenizer would score as
very unusual text. MDLM and SEDD therefore undo the tokenisation with hand-written rules before
tokenising with GPT-2; reported numbers depend on these rules, so ``detokenize`` reproduces the
rules of MDLM's ``dataloader.py`` (2024) one by one (a few are quirky; each is commented).

``ZERO_SHOT`` is a table, one ``ZeroShotSet`` per corpus: Hugging Face Hub name, config, split,
text column and detokenizer. The names are those MDLM used in 2024 (``wikitext``, ``ptb_text_only``,
``lm1b``; LAMBADA from ``EleutherAI/lambada_openai``, the same 5,153 OpenAI passages that MDLM
downloads as ``lambada_test.jsonl``). **Hub names change**: ``datasets >= 4`` no longer runs
loading scripts, so PTB and LM1B are read from the Hub's automatic Parquet conversion
(``revision="refs/convert/parquet"``); if a name stops working, edit the table or pass
``data_files=`` with a local copy — that is also how the tests run offline.

What one document is:

* WikiText: one **article**. The raw files hold one paragraph per line, article titles as
  ``" = Title = "`` and section titles as ``" = = Section = = "``; ``join_wikitext_articles`` groups
  the lines back into articles (MDLM scores each line separately; articles keep long-range context,
  as in lm-eval-harness's document-level WikiText). Rules are still applied line by line, so a
  bracket or quote rule never pairs symbols across paragraphs.
* PTB and LM1B: one sentence per row. LAMBADA: one passage per row.

References: Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models" (MDLM);
Lou et al. 2024, "Discrete Diffusion Modeling by Estimating the Ratios of the Data Distribution"
(SEDD); Radford et al. 2019 (GPT-2), whose zero-shot protocol these follow.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .validation import check_int

__all__ = ["wikitext_detokenizer", "ptb_detokenizer", "lm1b_detokenizer", "lambada_detokenizer",
           "join_wikitext_articles", "ZeroShotSet", "ZERO_SHOT", "detokenize", "load_zero_shot"]

# A rule is (pattern, replacement), applied in order: a str pattern means "replace every
# non-overlapping occurrence" (str.replace), a compiled pattern means re.sub. Order matters.
Rule = tuple[str | re.Pattern[str], str]


def _apply(rules: Iterable[Rule], text: str) -> str:
    for pattern, repl in rules:
        text = text.replace(pattern, repl) if isinstance(pattern, str) else pattern.sub(repl, text)
    return text


_WIKITEXT_RULES: tuple[Rule, ...] = (
    ("s '", "s'"),  # plural possessive: "the players ' union" -> "the players' union"
    # (MDLM's next rule, re.sub(r"/' [0-9]/", ...), only matches literal slashes: a no-op, omitted)
    (" @-@ ", "-"),  # WikiText splits hyphens and number separators: "guest @-@ starring",
    (" @,@ ", ","),  # "1 @,@ 000" and "3 @.@ 5"
    (" @.@ ", "."),
    (" : ", ": "),  # punctuation was split off the preceding word
    (" ; ", "; "),
    (" . ", ". "),
    (" ! ", "! "),
    (" ? ", "? "),
    (" , ", ", "),
    (re.compile(r"\(\s*([^)]*?)\s*\)"), r"(\1)"),  # "( 712 – 770 )" -> "(712 – 770)"
    (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),
    (re.compile(r"\{\s*([^}]*?)\s*\}"), r"{\1}"),
    (re.compile(r'"\s*([^"]*?)\s*"'), r'"\1"'),  # '" Hello "' -> '"Hello"'
    # same for single quotes; it pairs apostrophes too ("actor 's ... 's" loses a space), as in MDLM
    (re.compile(r"'\s*([^']*?)\s*'"), r"'\1'"),
    ("= = = =", "===="),  # section headings: "= = Career = =" -> "== Career =="
    ("= = =", "==="),
    ("= =", "=="),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),  # "20 ° C" -> "20°C"
    (" \n", "\n"),  # the spaces around line ends (this is why a final " N" stays "N")
    ("\n ", "\n"),
    (" N ", " 1 "),  # PTB-style number placeholder (kept from MDLM; rare in WikiText)
    (" 's", "'s"),  # possessive / contraction
)


def wikitext_detokenizer(text: str) -> str:
    """WikiText rules, applied line by line; each line loses its surrounding spaces.

    Every line is first brought to the form of a raw WikiText row, ``" " + text + " \\n"``, so that
    rules such as ``" . "`` fire at line ends exactly as in MDLM, which detokenises row by row,
    even for local copies whose lines lack the spaces. The spaces MDLM leaves at row starts are
    stripped.
    """
    return "\n".join(_apply(_WIKITEXT_RULES, " " + line.strip() + " \n").strip()
                     for line in text.split("\n"))


_PTB_RULES: tuple[Rule, ...] = (
    (" 's", "'s"),  # "the company 's" -> "the company's"
    ("s ' ", "s' "),  # plural possessive
    (" n't", "n't"),  # "does n't" -> "doesn't"
    (" \n ", "\n"),
    ("\\/", "/"),  # PTB escapes slashes: "1\/2" -> "1/2"
    # PTB replaced every number by "N"; MDLM turns it into "1" (looping str.replace ten times, since
    # adjacent " N N " overlap); a lookaround does all of them at once
    (re.compile(r"(?<= )N(?= )"), "1"),
    ("$ 1", "$1"),  # "$ N" -> "$1"
    ("# 1", "#1"),
    ("<unk>", "?"),  # out-of-vocabulary words: MDLM scores them as "?"
)


def ptb_detokenizer(text: str) -> str:
    """PTB rules (MDLM's ``ptb_detokenizer``)."""
    return _apply(_PTB_RULES, text)


_LM1B_RULES: tuple[Rule, ...] = (
    ("http : / / ", "http://"),  # tokenised URLs
    ("https : / / ", "https://"),
    (re.compile(r" '(\w+)"), r"'\1"),  # contractions: "it 's", "they 're" (also eats opening quotes)
    (re.compile(r" (\w+) \. "), r" \1. "),  # a full stop after a word, mid-sentence ...
    (re.compile(r" (\w+) \.$"), r" \1."),  # ... and at the end
    (" ? ", "? "),
    (re.compile(r" \?$"), "?"),
    (" ! ", "! "),
    (re.compile(r" !$"), "!"),
    (" , ", ", "),
    (" : ", ": "),
    (" ; ", "; "),
    (" / ", "/"),
    (re.compile(r'" ([^"]+) "'), r'"\1"'),  # '" quoted "' -> '"quoted"'
    (re.compile(r"' ([^']+) '"), r"'\1'"),
    (re.compile(r"\( ([^()]+) \)"), r"(\1)"),
    (re.compile(r"\[ ([^\[\]]+) \]"), r"[\1]"),
    ("$ ", "$"),  # currency symbols attach to the amount
    ("\N{POUND SIGN} ", "\N{POUND SIGN}"),
)


def lm1b_detokenizer(text: str) -> str:
    """LM1B (One Billion Word benchmark) rules (MDLM's ``lm1b_detokenizer``)."""
    return _apply(_LM1B_RULES, text)


def lambada_detokenizer(text: str) -> str:
    """LAMBADA: straighten curly double quotes and start the passage on a new line.

    The leading newline follows GPT-2's LAMBADA evaluation (MDLM and SEDD keep it): it tells the
    model that a new document begins, as after a paragraph break in WebText.
    """
    return "\n" + text.replace("\N{LEFT DOUBLE QUOTATION MARK}", '"').replace(
        "\N{RIGHT DOUBLE QUOTATION MARK}", '"').strip()


_ARTICLE_TITLE = re.compile(r"= [^=].* =")  # "= Title =" but not "= = Section = ="


def join_wikitext_articles(lines: Iterable[str]) -> list[str]:
    """Group raw WikiText lines (one paragraph per line) into articles, one string each.

    A new article starts at every title line ``" = Title = "``; section titles stay inside. Lines
    keep their text (trailing newlines removed), blank lines inside an article are kept as "" and
    those at its edges dropped, and the article is joined with "\\n".
    """
    articles: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        line = line.rstrip("\r\n")
        if _ARTICLE_TITLE.fullmatch(line.strip()) and current:
            articles.append(current)
            current = []
        current.append(line if line.strip() else "")
    articles.append(current)
    out = []
    for article in articles:
        text = "\n".join(article).strip("\n")  # blank lines at the edges only
        if text.strip():
            out.append(text)
    return out


@dataclass(frozen=True)
class ZeroShotSet:
    """Where one evaluation corpus lives on the Hub, and how to turn its rows into documents."""
    hub_name: str
    config: str | None
    split: str
    column: str  # text column on the Hub (local .json/.jsonl/.parquet files must use it too)
    detokenizer: Callable[[str], str]
    revision: str | None = None  # "refs/convert/parquet": the Hub's Parquet copy of a script dataset
    join_articles: bool = False  # WikiText: group paragraph lines into articles


ZERO_SHOT: dict[str, ZeroShotSet] = {
    "wikitext2": ZeroShotSet("wikitext", "wikitext-2-raw-v1", "test", "text", wikitext_detokenizer,
                             join_articles=True),
    "wikitext103": ZeroShotSet("wikitext", "wikitext-103-raw-v1", "test", "text", wikitext_detokenizer,
                               join_articles=True),
    "ptb": ZeroShotSet("ptb_text_only", "penn_treebank", "test", "sentence", ptb_detokenizer,
                       revision="refs/convert/parquet"),
    "lambada": ZeroShotSet("EleutherAI/lambada_openai", "default", "test", "text", lambada_detokenizer),
    "lm1b": ZeroShotSet("lm1b", None, "test", "text", lm1b_detokenizer, revision="refs/convert/parquet"),
}


def _get_set(name: str) -> ZeroShotSet:
    if name not in ZERO_SHOT:
        raise ValueError(f"name must be one of {sorted(ZERO_SHOT)}, got {name!r}")
    return ZERO_SHOT[name]


def detokenize(name: str, text: str) -> str:
    """Apply the detokenizer of evaluation set ``name`` to one document."""
    return _get_set(name).detokenizer(text)


_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}  # anything else: "text"
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip"}


def _builder_for(files: list[str]) -> str:
    kinds = set()
    for f in files:
        suffixes = [s.lower() for s in os.path.basename(f).split(".")[1:]]
        suffixes = ["." + s for s in suffixes if "." + s not in _COMPRESSION]
        kinds.add(_BUILDERS.get(suffixes[-1], "text") if suffixes else "text")
    if len(kinds) > 1:
        raise ValueError(f"data_files mixes file types ({sorted(kinds)}): give files of one kind only")
    return kinds.pop()


def load_zero_shot(name: str, data_files: str | os.PathLike | list[str] | None = None,
                   max_documents: int | None = None, *, raw: bool = False,
                   cache_dir: str | None = None) -> list[str]:
    """The documents of evaluation set ``name``, detokenised (``raw=True``: as stored).

    Without ``data_files`` the set comes from the Hugging Face Hub as described by ``ZERO_SHOT``.
    With ``data_files`` (a path, glob or list of them) it is read locally: ``.json``/``.jsonl``/
    ``.parquet`` files through ``datasets``' builder of that name (the text sits in the set's
    column, e.g. "sentence" for PTB), any other file as plain text, one row per line.
    ``max_documents`` keeps the first documents only; blank documents are dropped.
    """
    spec = _get_set(name)
    if max_documents is not None:
        check_int("max_documents", max_documents, hint=" or None")
    import datasets  # heavy (pyarrow, pandas): imported only when data is actually loaded

    if data_files is not None:
        files = [os.fspath(data_files)] if isinstance(data_files, (str, os.PathLike)) else \
            [os.fspath(f) for f in data_files]
        if not files:
            raise ValueError("data_files must name at least one file (or be None to use the Hub)")
        for f in files:
            if not (glob.glob(f) if glob.has_magic(f) else os.path.isfile(f)):
                raise FileNotFoundError(f"data_files: no file at {f!r} (check the path)")
        builder = _builder_for(files)
        column = "text" if builder == "text" else spec.column  # the text builder always says "text"
        ds = datasets.load_dataset(builder, data_files=files, split="train", cache_dir=cache_dir)
        source = f"data_files={files}"
    else:
        column = spec.column
        try:
            ds = datasets.load_dataset(spec.hub_name, spec.config, split=spec.split, revision=spec.revision,
                                       cache_dir=cache_dir)
        except Exception as err:
            raise RuntimeError(
                f"could not load {name!r} from the Hub as load_dataset({spec.hub_name!r}, {spec.config!r}, "
                f"split={spec.split!r}, revision={spec.revision!r}): {err}. Hub names change: update "
                f"ZERO_SHOT[{name!r}] or pass data_files= with a local copy") from err
        source = f"the Hub ({spec.hub_name})"
    if column not in ds.column_names:
        raise ValueError(f"{source} has no {column!r} column (columns: {ds.column_names}); for {name!r} "
                         f"the text must be in {column!r}")
    rows = [r if isinstance(r, str) else "" for r in ds[column]]
    docs = join_wikitext_articles(rows) if spec.join_articles else rows
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise ValueError(f"{source} holds no non-blank documents for {name!r}")
    if max_documents is not None:
        docs = docs[:max_documents]
    return docs if raw else [spec.detokenizer(d) for d in docs]
