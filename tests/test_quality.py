"""Sample-quality metrics: generative perplexity (protocols "bos" and "mdlm"), entropy, repetition."""
import importlib.util
import math

import pytest
import torch

from minarmd.ar import GPT, ar_loss
from minarmd.config import TransformerConfig
from minarmd.quality import ARJudge, HFJudge, Quality, mdlm_mask, measure, repetition, sample_entropy


def judge_model():
    torch.manual_seed(0)
    return GPT(TransformerConfig(vocab_size=11, max_len=16, n_layer=1, n_head=2, n_embd=16)).double()


def test_entropy_of_known_histograms():
    x = torch.tensor([[3] * 8, list(range(8)), [1, 1, 2, 2, 1, 1, 2, 2]])
    assert torch.allclose(sample_entropy(x), torch.tensor([0.0, math.log(8), math.log(2)], dtype=torch.float64))


def test_repetition_counts_repeated_ngrams():
    x = torch.tensor([[1, 2, 1, 2, 1, 2], [1, 2, 3, 4, 5, 6]])
    assert repetition(x, 1).tolist() == [1 - 2 / 6, 0.0]
    assert repetition(x, 2).tolist() == [1 - 2 / 5, 0.0]
    with pytest.raises(ValueError, match="n must be"):
        repetition(x, 7)


def test_generative_perplexity_is_exp_of_the_judge_nll():
    model = judge_model()
    x = torch.randint(0, 11, (10, 16), generator=torch.Generator().manual_seed(0))
    q = measure(x, ARJudge(model), batch_size=3)
    with torch.no_grad():
        nll = ar_loss(model, x, per_token=True).mean(1)
    assert abs(q.gen_ppl - math.exp(float(nll.mean()))) < 1e-9
    assert abs(q.gen_ppl_se - q.gen_ppl * float(nll.std()) / math.sqrt(10)) < 1e-9
    assert q.protocol == "bos" and "protocol bos" in q.describe()  # the default, named
    # a repetitive sample set shows up in entropy and rep-n, whatever its perplexity
    dull = measure(torch.full((10, 16), 4), ARJudge(model))
    assert dull.entropy == 0.0 and dull.rep[1] > 0.9 and q.entropy > 1.5


def test_measure_rejects_samples_the_judge_cannot_read():
    judge = ARJudge(judge_model())
    with pytest.raises(ValueError, match="vocabulary"):
        measure(torch.full((2, 8), 11), judge)
    with pytest.raises(ValueError, match="context"):
        measure(torch.zeros(2, 17, dtype=torch.long), judge)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="transformers is installed")
def test_hf_judge_without_transformers_says_what_to_install():
    with pytest.raises(ValueError, match="pip install transformers"):
        HFJudge()


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None, reason="transformers is not installed")
def test_hf_judge_scores_like_the_hub_model_itself(tmp_path):
    # a tiny random GPT-2 saved locally stands in for GPT-2 Large (no download needed)
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)).save_pretrained(tmp_path)
    judge = HFJudge(str(tmp_path))
    x = torch.randint(0, 50257, (3, 12), generator=torch.Generator().manual_seed(0))
    ids = torch.cat([torch.full((3, 1), 50256), x], dim=1)
    with torch.no_grad():
        reference = judge.model(ids, labels=ids).loss  # transformers' own shifted mean NLL
    assert abs(float(judge.nll(x).mean()) - float(reference)) < 1e-5 and judge.max_len == 31
    assert measure(x, judge).samples == 3
    # "mdlm": no BOS, tokens 2..N scored (no <|endoftext|> among x), pooled: transformers' loss on x itself
    with torch.no_grad():
        no_bos = judge.model(x, labels=x).loss
    q = measure(x, judge, protocol="mdlm")
    assert q.protocol == "mdlm" and judge.context == 32
    assert abs(math.log(q.gen_ppl) - float(no_bos)) < 1e-5 and abs(float(no_bos) - float(reference)) > 1e-3
    with pytest.raises(ValueError, match="could not load"):
        HFJudge(str(tmp_path / "missing"))


# ---- MDLM's protocol (kuleshov-group/mdlm, diffusion.py, Diffusion.compute_generative_perplexity) ----
EOS = 10  # the tiny judge's end-of-text id for these tests


def by_hand(model, x, eos, context, rule="mdlm"):
    """Per-sample (NLL sum, scored count) token by token with ``next_logits``, chunk by chunk, the mask by
    a loop. rule "mdlm": every non-EOS token and each chunk's first EOS (the chunk's first token, never
    scored, counts as seen). Wrong rules, to show the tests tell them apart: "all" (every token 2..),
    "truncate" (nothing after the first EOS), "with_first" (token 1 of each chunk scored too, given BOS)."""
    out = []
    with torch.no_grad():
        for row in x.tolist():
            s, c = 0.0, 0
            for start in range(0, len(row), context):
                chunk = row[start:start + context]
                seen = chunk[0] == eos
                for j in range(0 if rule == "with_first" else 1, len(chunk)):
                    is_eos = chunk[j] == eos
                    keep = {"mdlm": not is_eos or not seen, "all": True, "truncate": not seen,
                            "with_first": not is_eos or not seen or j == 0}[rule]
                    seen = seen or is_eos
                    if keep:
                        logp = torch.log_softmax(model.next_logits(torch.tensor([chunk[:j]], dtype=torch.long)), -1)
                        s, c = s - float(logp[0, chunk[j]]), c + 1
            out.append((s, c))
    return out


def pooled(per_sample):
    """MDLM's average: exp(total NLL / total scored tokens), all samples pooled (a weighted MeanMetric)."""
    return math.exp(sum(s for s, _ in per_sample) / sum(c for _, c in per_sample))


def eos_samples():
    """6 samples of 20 tokens (chunks of 16 + 4 under a judge of context 16) with EOS placed to matter."""
    x = torch.randint(0, EOS, (6, 20), generator=torch.Generator().manual_seed(1))
    x[0, 5], x[0, 9], x[0, 12] = EOS, EOS, EOS  # first EOS scored, the later two not
    x[1, 0], x[1, 7] = EOS, EOS  # a leading EOS (context only) makes the next one the second
    x[2, 15], x[2, 17], x[2, 18] = EOS, EOS, EOS  # end of chunk 1; chunk 2 restarts the count at its first token
    x[3, 8:] = EOS  # EOS then padding-like EOS: only the first counts
    return x  # rows 4, 5: no EOS


def test_mdlm_protocol_is_the_hand_computation():
    model = judge_model()
    judge = ARJudge(model, eos_id=EOS)
    x = eos_samples()
    q = measure(x, judge, batch_size=4, protocol="mdlm")
    per_sample = by_hand(model, x, EOS, context=16)
    assert q.protocol == "mdlm" and "protocol mdlm" in q.describe() and q.samples == 6
    assert abs(q.gen_ppl - pooled(per_sample)) < 1e-12 * q.gen_ppl
    # the pooled mean is not the mean of per-sample means (rows score different counts), so this checks it
    assert abs(q.gen_ppl - math.exp(sum(s / c for s, c in per_sample) / 6)) > 1e-3
    # standard error: delta method for the ratio sum(s_i) / sum(c_i)
    r = math.log(q.gen_ppl)
    c_bar = sum(c for _, c in per_sample) / 6
    se = math.sqrt(sum((s - r * c) ** 2 for s, c in per_sample) / (6 * 5)) / c_bar
    assert abs(q.gen_ppl_se - q.gen_ppl * se) < 1e-12 * q.gen_ppl
    # quality metrics other than gen. ppl read the whole sample, whatever the protocol
    assert q.entropy == float(sample_entropy(x).mean()) and q.rep[4] == float(repetition(x, 4).mean())


def test_mdlm_protocol_without_eos_scores_tokens_2_to_n():
    model = judge_model()
    x = torch.randint(0, EOS, (10, 16), generator=torch.Generator().manual_seed(0))  # no EOS anywhere
    q = measure(x, ARJudge(model, eos_id=EOS), batch_size=3, protocol="mdlm")
    with torch.no_grad():
        nll = ar_loss(model, x, per_token=True)[:, 1:]  # every token but the first counts
    assert abs(math.log(q.gen_ppl) - float(nll.mean())) < 1e-12
    assert abs(q.gen_ppl_se - q.gen_ppl * float(nll.mean(1).std()) / math.sqrt(10)) < 1e-12 * q.gen_ppl


def test_mdlm_mask_scores_non_eos_tokens_and_each_chunks_first_eos():
    e = EOS
    chunks = torch.tensor([[3, e, 4, e, 5, e], [e, 3, e, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert mdlm_mask(chunks, e).tolist() == [[True, True, False, True, False],  # 2nd, 3rd EOS dropped
                                             [True, False, True, True, True],  # leading EOS was the first
                                             [True] * 5]  # no EOS: tokens 2..6 all count


def test_mdlm_protocol_drops_later_eos_tokens_but_not_the_text_after_them():
    model = judge_model()
    judge = ARJudge(model, eos_id=EOS)
    text = torch.randint(0, EOS, (1, 16), generator=torch.Generator().manual_seed(2))
    padded = text.clone()
    padded[0, 6:] = EOS  # 5 text tokens scored (2..6 of text), then EOS at 7 (scored), EOS padding (not)
    with torch.no_grad():
        nll = ar_loss(model, padded, per_token=True)[0]
    q = measure(padded, judge, protocol="mdlm")
    assert abs(math.log(q.gen_ppl) - float(nll[1:7].mean())) < 1e-12  # tokens 2..7: text and the first EOS
    assert abs(math.log(q.gen_ppl) - float(nll[1:].mean())) > 1e-3  # the EOS padding would have moved it
    # text after the first EOS still counts, as in MDLM's code (its main.py comment says it is discarded)
    after = padded.clone()
    after[0, 10] = 3
    moved = measure(after, judge, protocol="mdlm")
    assert abs(moved.gen_ppl - pooled(by_hand(model, after, EOS, 16))) < 1e-12 * moved.gen_ppl
    assert abs(moved.gen_ppl - pooled(by_hand(model, after, EOS, 16, rule="truncate"))) > 1e-3
    # the EOS padding adds nothing: the same as the sample cut just after its first EOS (causal judge)
    cut = measure(padded[:, :7], judge, protocol="mdlm")
    assert abs(math.log(q.gen_ppl) - math.log(cut.gen_ppl)) < 1e-12


def test_mdlm_protocol_is_not_the_bos_protocol_nor_a_wrong_rule():
    model = judge_model()
    judge = ARJudge(model, eos_id=EOS)
    x = eos_samples()
    q = measure(x, judge, protocol="mdlm").gen_ppl
    assert abs(q - measure(x[:, :16], judge).gen_ppl) > 1e-3 * q  # "bos" scores every token given BOS
    for wrong in ("all", "truncate", "with_first"):  # each would fail the hand-computation test
        assert abs(q - pooled(by_hand(model, x, EOS, 16, rule=wrong))) > 1e-4 * q, wrong
    assert abs(q - pooled(by_hand(model, x, EOS, 10))) > 1e-4 * q  # chunks not at the judge's context


def test_protocol_errors_name_the_argument_and_the_fix():
    judge = ARJudge(judge_model(), eos_id=EOS)
    x = torch.zeros(2, 8, dtype=torch.long)
    for bad in ("MDLM", "gpt2", None):
        with pytest.raises(ValueError, match="protocol must be one of 'bos', 'mdlm'"):
            measure(x, judge, protocol=bad)
    with pytest.raises(ValueError, match=r"eos_id=\.\.\..*protocol='bos'"):
        measure(x, ARJudge(judge_model()), protocol="mdlm")  # a char-level judge has no end-of-text
    with pytest.raises(ValueError, match="eos_id must be"):
        ARJudge(judge_model(), eos_id=11)
    with pytest.raises(ValueError, match="no token was scored"):
        measure(torch.zeros(2, 1, dtype=torch.long), judge, protocol="mdlm")
    # "bos" rejects samples longer than the judge's context; "mdlm" chunks them, as MDLM does
    with pytest.raises(ValueError, match="context"):
        measure(torch.zeros(2, 17, dtype=torch.long), judge)
    assert measure(torch.zeros(2, 40, dtype=torch.long), judge, protocol="mdlm").samples == 2


def test_quality_records_its_protocol():
    q = Quality(2.0, 0.1, 1.0, {1: 0.5}, 4)
    assert q.protocol == "bos" and "(protocol bos)" in q.describe()
    assert "(protocol mdlm)" in Quality(2.0, 0.1, 1.0, {1: 0.5}, 4, "mdlm").describe()
