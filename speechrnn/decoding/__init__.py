"""CTC decoders (greedy, prefix beam search with LM) and language models."""

from speechrnn.lazy import lazy_exports

__all__ = ["GreedyDecoder", "Hypothesis", "Word", "greedy_ids"]
__getattr__ = lazy_exports(__name__, {
    "GreedyDecoder": "speechrnn.decoding.greedy", "greedy_ids": "speechrnn.decoding.greedy",
    "Hypothesis": "speechrnn.decoding.hypothesis", "Word": "speechrnn.decoding.hypothesis"})
