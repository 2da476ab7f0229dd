"""A recording fake upstream speaking OpenAI's and Ollama's wire formats, for the tests of
`mars serve` (see `server`), and the pure answers it gives (see `answers`)."""

from .answers import answer, answer_words, prompt_tokens, text_of
from .server import FakeUpstream, Record

__all__ = ["FakeUpstream", "Record", "answer", "answer_words", "prompt_tokens", "text_of"]
