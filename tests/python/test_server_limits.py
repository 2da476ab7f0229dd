"""`mars serve`'s limits through the real `openai` SDK: a client that closes its stream cancels
every upstream call of its request, and the concurrency bound and admission queue hold under 50
parallel clients."""

import threading
import time

import openai

from fake_upstream import text_of
from fake_upstream.mars_process import metric_sum, openai_client

QUESTION = [{"role": "user", "content": "What is six times seven?"}]
CLIENTS = 50


def wait_until_idle(server, deadline_s: float = 15) -> float | None:
    """Polls `/metrics` until the requests in flight are 0 or the deadline passes; returns the
    last value read."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = metric_sum(server.metrics(), "in_flight")
        if value == 0 or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def open_chats(fake) -> int:
    return sum(r.state == "open" for r in fake.chats())


def test_closing_a_stream_early_drops_the_upstream_call(mars, fake):
    fake.hold(after_chunks=1)
    stream = openai_client(mars).chat.completions.create(
        model="gpt-fake", messages=QUESTION, seed=1, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    assert [r.state for r in fake.chats()] == ["open"]
    stream.close()
    # Held at the gate, the fake sees the connection closed within a second.
    assert fake.wait_for(lambda f: [r.state for r in f.chats()] == ["dropped"], timeout=1.0), \
        [r.state for r in fake.chats()]
    assert wait_until_idle(mars) == 0


def test_closing_a_moa_stream_while_it_proposes_drops_every_proposal(mars, fake):
    fake.hold(after_chunks=1)
    stream = openai_client(mars, timeout=30).chat.completions.create(
        model="moa-gpt-fake", messages=QUESTION, seed=2, stream=True)
    # The response has begun (keep-alive while the proposers run); all three are held.
    assert fake.wait_for(lambda f: open_chats(f) == 3, timeout=30), fake.chats()
    stream.close()
    assert fake.wait_for(
        lambda f: [r.state for r in f.chats()] == ["dropped"] * 3, timeout=1.0), \
        [r.state for r in fake.chats()]
    assert wait_until_idle(mars) == 0
    # No aggregation was asked for after the client left.
    fake.release()
    assert len(fake.chats()) == 3


def run_clients(server, count: int, **client_kwargs) -> list:
    """`count` threads, each one non-streaming baseline request with its own question; returns
    each client's (question, answer text or the exception it raised), and the threads."""
    client = openai_client(server, **client_kwargs)
    results: list = [None] * count

    def one(i: int):
        question = f"Client {i}: what is {i} plus {i}?"
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-fake", messages=[{"role": "user", "content": question}], seed=i)
            results[i] = (question, raw.parse().choices[0].message.content)
        except Exception as err:  # noqa: BLE001 - every failure is the client's result
            results[i] = (question, err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    return results, threads


def assert_answers_are_their_own(results, fake):
    """Every answered client got the fake's answer to its own question, and the fake answered
    each of those questions exactly once and no other."""
    answered = [(q, a) for q, a in results if isinstance(a, str)]
    for question, text in answered:
        assert text == text_of("gpt-fake", [{"role": "user", "content": question}],
                               int(question.split()[1].rstrip(":"))), question
    asked = sorted(r.last_content for r in fake.chats())
    assert asked == sorted(q for q, _ in answered)
    # The fake records each end just after its last write: wait for the last ones.
    assert fake.wait_for(lambda f: all(r.state == "done" for r in f.chats()), timeout=10)


def test_fifty_clients_share_four_upstream_slots_and_all_are_answered(start_mars, fake):
    server = start_mars("--max-concurrency", "4")
    fake.hold(after_chunks=0)
    results, threads = run_clients(server, CLIENTS, max_retries=0)
    try:
        # Four calls reach the fake; the other clients wait in the admission queue.
        assert fake.wait_for(lambda f: f.in_flight == 4, timeout=60), fake.in_flight
    finally:
        fake.release()
    for thread in threads:
        thread.join(120)
    assert all(isinstance(a, str) for _, a in results), [a for _, a in results]
    assert fake.max_in_flight == 4
    assert_answers_are_their_own(results, fake)
    assert len(fake.chats()) == CLIENTS


def test_past_the_queue_clients_get_429_and_nothing_is_lost_or_duplicated(start_mars, fake):
    server = start_mars("--max-concurrency", "4", "--max-queue", "4")
    fake.hold(after_chunks=0)
    results, threads = run_clients(server, CLIENTS, max_retries=0)

    def answered() -> int:
        return sum(r is not None for r in results)

    try:
        # Four running and four queued are admitted; the other 42 are answered at once.
        assert fake.wait_for(lambda f: f.in_flight == 4 and answered() == CLIENTS - 8,
                             timeout=60), (fake.in_flight, [r for r in results if r])
    finally:
        fake.release()
    for thread in threads:
        thread.join(120)
    refused = [a for _, a in results if not isinstance(a, str)]
    assert len(refused) == CLIENTS - 8
    for err in refused:
        assert isinstance(err, openai.RateLimitError), err
        assert err.response.headers.get("retry-after")
    assert fake.max_in_flight == 4
    assert_answers_are_their_own(results, fake)
    assert len(fake.chats()) == 8
    assert wait_until_idle(server) == 0
