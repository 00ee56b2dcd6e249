"""Zero-shot sets, offline: tiny stand-in files through load_zero_shot, detokenizers, the table, errors."""
import dataclasses
import json

import pytest

from minarmd import zeroshot
from minarmd.zeroshot import ZERO_SHOT, detokenize, join_wikitext_articles, load_zero_shot

# WikiText raw format: one paragraph per line with a leading and a trailing space, blank lines
# between, article titles " = T = ", section titles " = = S = = ", tokenised punctuation and @-@.
WIKITEXT_RAW = """\
 
 = Robert Boulter = 
 
 Robert Boulter is an English film , television and theatre actor . He had a guest @-@ starring role in 2000 . 
 
 = = Career = = 
 
 In 2006 , Boulter starred in the play Herons ( written by Simon Stephens ) at the Royal Court Theatre . 
 
 = Du Fu = 
 
 Du Fu was a prominent Chinese poet . The river is 1 @,@ 000 km long and 3 @.@ 5 km wide ; " truly " vast ! 
 
"""
WIKITEXT_DOCS = [
    "= Robert Boulter =\n\nRobert Boulter is an English film, television and theatre actor. He had a "
    "guest-starring role in 2000.\n\n== Career ==\n\nIn 2006, Boulter starred in the play Herons (written "
    "by Simon Stephens) at the Royal Court Theatre.",
    '= Du Fu =\n\nDu Fu was a prominent Chinese poet. The river is 1,000 km long and 3.5 km wide; "truly" vast!',
]
PTB_ROWS = [
    {"sentence": "the company 's shares were n't worth $ N a share"},
    {"sentence": "<unk> said the N N results were 1\\/2 of forecasts"},
    {"sentence": "investors ' money rose N N N times this year"},
]
PTB_DOCS = [
    "the company's shares weren't worth $1 a share",
    "? said the 1 1 results were 1/2 of forecasts",
    "investors' money rose 1 1 1 times this year",
]
LAMBADA_ROWS = [
    {"text": "\u201cAre you coming?\u201d she asked. He nodded and followed her to the door"},
    {"text": "  The cat sat on the mat , and the dog watched the cat  "},
]
LAMBADA_DOCS = [
    '\n"Are you coming?" she asked. He nodded and followed her to the door',
    "\nThe cat sat on the mat , and the dog watched the cat",
]
LM1B_RAW = """\
He said " it 's fine " ( really ) , and left .
Visit http : / / example.com / news for $ 5 or \u00a3 3 ?

"""
LM1B_DOCS = ['He said "it\'s fine" (really), and left.', "Visit http://example.com/news for $5 or \u00a33?"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_table_has_the_five_paper_sets_with_all_fields():
    assert set(ZERO_SHOT) == {"wikitext2", "wikitext103", "ptb", "lambada", "lm1b"}
    for name, spec in ZERO_SHOT.items():
        assert spec.hub_name and spec.split == "test" and spec.column, name
        assert callable(spec.detokenizer)
        assert spec.join_articles == name.startswith("wikitext")
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.split = "train"
    assert ZERO_SHOT["wikitext2"].config == "wikitext-2-raw-v1"
    assert ZERO_SHOT["wikitext103"].config == "wikitext-103-raw-v1"
    assert ZERO_SHOT["ptb"].column == "sentence"


def test_join_wikitext_articles_splits_at_titles_only():
    lines = [" \n", " Preamble before any title . \n", " = First = \n", " \n", " Para one . \n",
             " = = Section = = \n", " = = = Sub @-@ section = = = \n", " Para two . \n", " \n",
             " = Second = \n", " Only para . \n", " \n", " \n"]
    assert join_wikitext_articles(lines) == [
        " Preamble before any title . ",
        " = First = \n\n Para one . \n = = Section = = \n = = = Sub @-@ section = = = \n Para two . ",
        " = Second = \n Only para . ",
    ]
    assert join_wikitext_articles([]) == [] and join_wikitext_articles(["", " \n"]) == []


def test_wikitext_from_raw_file(tmp_path):
    path = tmp_path / "wiki.test.raw"
    path.write_text(WIKITEXT_RAW, encoding="utf-8")
    for name in ("wikitext2", "wikitext103"):
        assert load_zero_shot(name, data_files=str(path), cache_dir=str(tmp_path / "cache")) == WIKITEXT_DOCS
    raw = load_zero_shot("wikitext2", data_files=path, raw=True, cache_dir=str(tmp_path / "cache"))
    assert len(raw) == 2 and raw[1].startswith(" = Du Fu = \n\n Du Fu") and "@,@" in raw[1]
    assert [detokenize("wikitext2", d) for d in raw] == WIKITEXT_DOCS
    first = load_zero_shot("wikitext2", data_files=[str(path)], max_documents=1, cache_dir=str(tmp_path / "cache"))
    assert first == WIKITEXT_DOCS[:1]


def test_ptb_from_jsonl_uses_the_sentence_column(tmp_path):
    path = _write_jsonl(tmp_path / "ptb.test.jsonl", PTB_ROWS)
    assert load_zero_shot("ptb", data_files=str(path), cache_dir=str(tmp_path / "cache")) == PTB_DOCS


def test_lambada_from_jsonl_one_passage_per_document(tmp_path):
    path = _write_jsonl(tmp_path / "lambada_test.jsonl", LAMBADA_ROWS)
    assert load_zero_shot("lambada", data_files=str(path), cache_dir=str(tmp_path / "cache")) == LAMBADA_DOCS


def test_lm1b_from_text_file(tmp_path):
    path = tmp_path / "news.en.heldout-00000-of-00050"  # no extension: read as plain text
    path.write_text(LM1B_RAW, encoding="utf-8")
    assert load_zero_shot("lm1b", data_files=str(path), cache_dir=str(tmp_path / "cache")) == LM1B_DOCS


def test_detokenizer_rules_one_by_one():
    assert detokenize("wikitext103", " 20 \u00b0 C and the players ' fund N \n") == \
        "20\u00b0C and the players' fund N\n"  # line-final " N" stays, as in MDLM
    assert detokenize("wikitext2", " the union 's fund \n") == "the union's fund\n"
    assert detokenize("wikitext2", " [ a ] { b } \n") == "[a] {b}\n"
    assert detokenize("ptb", "a \\/ b # N and N") == "a / b #1 and N"
    assert detokenize("lm1b", "it 's a ' quote ' here ! yes ; no : [ x ] https : / / a.b") == \
        "it's a 'quote' here! yes; no: [x] https://a.b"
    with pytest.raises(ValueError, match="name must be one of"):
        detokenize("wiki", "x")


def test_hub_path_passes_the_table_arguments(monkeypatch):
    import datasets
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        rows = [" = T = \n", "", " A , b . \n", "", " = U = \n", " C . \n"]  # Hub rows: "" for blanks
        return datasets.Dataset.from_dict({"text": rows})
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_zero_shot("wikitext103") == ["= T =\n\nA, b.", "= U =\nC."]
    assert calls == [("wikitext", "wikitext-103-raw-v1", {"split": "test", "revision": None, "cache_dir": None})]

    def failing_load_dataset(*args, **kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(datasets, "load_dataset", failing_load_dataset)
    with pytest.raises(RuntimeError, match=r"ptb_text_only.*no network.*ZERO_SHOT\['ptb'\].*data_files"):
        load_zero_shot("ptb")


def test_errors(tmp_path):
    cache = str(tmp_path / "cache")
    with pytest.raises(ValueError, match=r"name must be one of \['lambada', 'lm1b', 'ptb'"):
        load_zero_shot("openwebtext")
    missing = tmp_path / "nowhere" / "wiki.test.raw"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_zero_shot("wikitext2", data_files=str(missing))
    with pytest.raises(FileNotFoundError, match=r"\*\.raw"):
        load_zero_shot("wikitext2", data_files=str(tmp_path / "*.raw"))
    with pytest.raises(ValueError, match="max_documents"):
        load_zero_shot("ptb", data_files=str(missing), max_documents=0)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no non-blank documents"):
        load_zero_shot("lm1b", data_files=str(blank), cache_dir=cache)
    wrong = _write_jsonl(tmp_path / "wrong.jsonl", [{"text": "a sentence"}])
    with pytest.raises(ValueError, match="no 'sentence' column"):
        load_zero_shot("ptb", data_files=str(wrong), cache_dir=cache)
    with pytest.raises(ValueError, match="mixes file types"):
        load_zero_shot("ptb", data_files=[str(wrong), str(blank)], cache_dir=cache)
    with pytest.raises(ValueError, match="at least one file"):
        load_zero_shot("ptb", data_files=[])


def test_import_is_light():
    # the module itself must not pull in `datasets` (pyarrow, pandas) at import time
    source = zeroshot.__loader__.get_source(zeroshot.__name__)
    top_level_imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not any("datasets" in line for line in top_level_imports)
