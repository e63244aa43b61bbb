"""Fake entailment backends for the semantic gate's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from detectors.semantic.backend import EntailmentBatch


def last_word(text: str) -> str:
    """A toy meaning: an answer means its last word ("It is Paris." -> "paris")."""
    words = text.lower().replace(".", " ").split()
    return words[-1] if words else ""


class MeaningBackend:
    """Entails iff two answers have the same toy meaning; records every pair it is asked.

    ``directional=True`` makes it a non-symmetric backend (like NLI), so the judge must ask
    both directions; ``one_way`` lists (premise meaning, hypothesis meaning) pairs that
    entail in that direction only, to exercise strict bidirectionality.
    """

    def __init__(self, meaning: Callable[[str], str] = last_word, directional: bool = False,
                 one_way: Sequence[tuple[str, str]] = ()):
        self.meaning = meaning
        self.symmetric = not directional
        self.name = "fake"
        self.one_way = set(one_way)
        self.asked: list[tuple[str, str]] = []
        self.prepared: list[list[str]] = []

    async def prepare(self, question: str, texts: Sequence[str]) -> None:
        self.prepared.append(list(texts))

    async def entails_batch(self, question: str, pairs) -> EntailmentBatch:
        self.asked.extend(pairs)
        out = []
        for a, b in pairs:
            ma, mb = self.meaning(a), self.meaning(b)
            out.append(ma == mb or (ma, mb) in self.one_way)
        return EntailmentBatch(tuple(out), calls=1)


WORDS = "what is the capital of france paris lyon it a city nice rome".split()
LABELS = {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}  # entailment first on purpose


def build_tiny_nli(folder, bias: list[float], random_head: bool = False) -> str:
    """Save a 2-layer BERT classifier and a WordLevel tokenizer to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", model_max_length=64,
    )
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        num_labels=3, id2label=LABELS,
                        label2id={v: k for k, v in LABELS.items()})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # unless random_head, the bias alone decides the class
        if not random_head:
            model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
