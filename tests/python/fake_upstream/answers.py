"""What the fake upstream answers: pure functions of the request, so that a test can compute the
text and token counts an upstream call produced without asking the fake."""

import hashlib
import json
import re

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]


def content_text(content) -> str:
    """A message's content as text (OpenAI allows a list of parts; mars sends strings)."""
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True)


def prompt_tokens(messages: list[dict]) -> int:
    """The prompt's token count the fake reports: whitespace-separated words over every
    message, plus one per message for its role."""
    return sum(len(content_text(m.get("content", "")).split()) + 1 for m in messages)


def answer_words(model: str, messages: list[dict], seed, index: int = 0) -> list[str]:
    """The words of the answer: 6 to 10 words chosen by a hash of the model, the last message,
    the seed and the choice index. Same request, same words."""
    last = content_text(messages[-1].get("content", "")) if messages else ""
    digest = hashlib.sha256(f"{model}\x00{last}\x00{seed}\x00{index}".encode()).digest()
    count = 6 + digest[0] % 5
    return [WORDS[b % len(WORDS)] for b in digest[1:1 + count]]


def answer(model: str, messages: list[dict], seed, max_tokens=None, index: int = 0):
    """(chunks, finish_reason): the answer as streamed pieces, one word each, cut at
    `max_tokens` words with finish reason `length`."""
    words = answer_words(model, messages, seed, index)
    finish = "stop"
    if max_tokens is not None and max_tokens < len(words):
        words, finish = words[:max_tokens], "length"
    chunks = [w + " " for w in words[:-1]] + words[-1:]
    return chunks, finish


def text_of(model: str, messages: list[dict], seed, max_tokens=None, index: int = 0) -> str:
    """The whole answer's text."""
    return "".join(answer(model, messages, seed, max_tokens, index)[0])


def pieces(text: str) -> list[str]:
    """A scripted answer as streamed pieces: each word with the whitespace after it, so that
    the pieces join back into `text` (less leading whitespace)."""
    found = re.findall(r"\S+\s*", text)
    return found or [text]
