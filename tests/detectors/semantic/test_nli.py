"""The nli backend on a tiny randomly initialised BERT built here (no download): proves
loading from a local folder, label lookup through id2label, batching and call counts."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from detectors.semantic.entailment import EquivalenceJudge, make_entailment  # noqa: E402
from detectors.semantic.nli import NLIEntailment, entailment_label_index, load_nli_model  # noqa: E402
from tests.detectors.semantic.fakes import LABELS, build_tiny_nli  # noqa: E402


@pytest.fixture(scope="module")
def always_entails(tmp_path_factory):
    return build_tiny_nli(tmp_path_factory.mktemp("nli_yes"), [5.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def never_entails(tmp_path_factory):
    return build_tiny_nli(tmp_path_factory.mktemp("nli_no"), [0.0, 0.0, 5.0])


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    return build_tiny_nli(tmp_path_factory.mktemp("nli_rand"), [0.0, 0.0, 0.0], random_head=True)


def test_entailment_label_is_read_from_id2label():
    assert entailment_label_index(LABELS) == 0
    assert entailment_label_index({"0": "contradiction", "1": "neutral", "2": "entailment"}) == 2
    with pytest.raises(ValueError):
        entailment_label_index({0: "yes", 1: "no"})


PAIRS = [("paris", "it is paris"), ("lyon", "paris"), ("a city", "nice"), ("rome", "rome")] * 3


async def test_label_mapping_decides_the_output(always_entails, never_entails):
    yes = await NLIEntailment(model_path=always_entails).entails_batch("capital of france", PAIRS)
    no = await NLIEntailment(model_path=never_entails).entails_batch("capital of france", PAIRS)
    assert yes.entails == (True,) * len(PAIRS) and no.entails == (False,) * len(PAIRS)


async def test_batched_logits_match_one_pair_at_a_time(random_model):
    question = "what is the capital of france"
    single = NLIEntailment(model_path=random_model, batch_size=1)
    batched = NLIEntailment(model_path=random_model, batch_size=8)
    reference, one_calls = single.logits(question, PAIRS)  # (12, 3)
    logits, calls = batched.logits(question, PAIRS)
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)  # padding is masked
    assert one_calls == len(PAIRS) and calls == 2  # ceil(12 / 8) forward passes
    swapped, _ = batched.logits(question, [(b, a) for a, b in PAIRS[:3]])
    assert not torch.allclose(swapped, logits[:3])  # premise and hypothesis are not swapped
    batch = await batched.entails_batch(question, PAIRS)
    assert batch.entails == tuple((logits.argmax(-1) == 0).tolist()) and batch.calls == 2


async def test_nli_is_directional_in_the_judge(always_entails):
    backend = make_entailment("nli", model_path=always_entails, batch_size=4)
    judge = EquivalenceJudge(backend, "what is the capital of france")
    assert await judge.equivalent([("paris", "it is paris"), ("lyon", "rome")]) == [True, True]
    assert judge.cost.backend_pairs == 4  # both directions of both pairs
    assert judge.cost.backend_calls == 1


def test_a_missing_folder_fails_instead_of_downloading(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_nli_model(str(tmp_path / "microsoft-deberta-large-mnli"))
