"""Sample-quality metrics: generative perplexity, entropy, repetition."""
import importlib.util
import math

import pytest
import torch

from minarmd.ar import GPT, ar_loss
from minarmd.config import TransformerConfig
from minarmd.quality import ARJudge, HFJudge, measure, repetition, sample_entropy


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
    with pytest.raises(ValueError, match="could not load"):
        HFJudge(str(tmp_path / "missing"))
