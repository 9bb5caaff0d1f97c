"""CTC decoders (greedy, prefix beam search with LM) and language models."""

from speechrnn.decoding.greedy import GreedyDecoder, greedy_ids
from speechrnn.decoding.hypothesis import Hypothesis, Word

__all__ = ["GreedyDecoder", "Hypothesis", "Word", "greedy_ids"]
