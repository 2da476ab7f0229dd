"""The fake upstream that the `mars serve` tests rely on, checked directly with the real clients:
its answers follow from the request, its gate holds, it notices a client that goes away, and it
counts requests in flight. A failure here means the server tests' evidence is wrong, not the
server."""

import threading

import ollama
import openai
import pytest

from fake_upstream import FakeUpstream, prompt_tokens, text_of

QUESTION = [{"role": "user", "content": "What is six times seven?"}]


@pytest.fixture
def own_fake():
    server = FakeUpstream(["gpt-fake"], ["llama-fake:latest"])
    yield server
    server.close()


def sdk(fake, **kwargs):
    return openai.OpenAI(base_url=fake.openai_url, api_key="unused", max_retries=0, timeout=30,
                         http_client=openai.DefaultHttpxClient(trust_env=False), **kwargs)


def test_answers_and_usage_follow_from_the_request(own_fake):
    done = sdk(own_fake).chat.completions.create(model="gpt-fake", messages=QUESTION, seed=3,
                                                 n=2)
    assert done.choices[0].message.content == text_of("gpt-fake", QUESTION, 3)
    assert done.choices[1].message.content == text_of("gpt-fake", QUESTION, 3, index=1)
    assert done.choices[0].message.content != done.choices[1].message.content
    assert done.usage.prompt_tokens == prompt_tokens(QUESTION)
    assert done.usage.completion_tokens == sum(
        len(c.message.content.split()) for c in done.choices)
    chat = ollama.Client(host=own_fake.ollama_url, trust_env=False).chat(
        model="llama-fake", messages=QUESTION, options={"seed": 3, "num_predict": 2})
    assert chat.message.content == text_of("llama-fake:latest", QUESTION, 3, max_tokens=2)
    assert (chat.done_reason, chat.eval_count) == ("length", 2)
    # The fake records the end just after its last write, so the client may see it first.
    assert own_fake.wait_for(lambda f: [r.state for r in f.chats()] == ["done", "done"], 10)


def test_the_gate_holds_and_a_closed_stream_is_seen_as_dropped(own_fake):
    own_fake.hold(after_chunks=1)
    stream = sdk(own_fake).chat.completions.create(model="gpt-fake", messages=QUESTION,
                                                   stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.content == text_of("gpt-fake", QUESTION, None).split()[0] + " "
    assert [r.state for r in own_fake.chats()] == ["open"]
    stream.close()
    assert own_fake.wait_for(lambda f: f.chats()[0].state == "dropped", timeout=5)
    assert own_fake.in_flight == 0


def test_the_maximum_in_flight_is_counted(own_fake):
    own_fake.hold(after_chunks=0)
    client = sdk(own_fake)
    threads = [threading.Thread(target=client.chat.completions.create,
                                kwargs={"model": "gpt-fake", "messages": QUESTION, "seed": i})
               for i in range(3)]
    for thread in threads:
        thread.start()
    assert own_fake.wait_for(lambda f: f.in_flight == 3, timeout=10)
    own_fake.release()
    for thread in threads:
        thread.join(30)
    assert own_fake.wait_for(lambda f: [r.state for r in f.chats()] == ["done"] * 3, 10)
    assert (own_fake.max_in_flight, own_fake.in_flight) == (3, 0)


def test_a_status_marker_answers_that_status(own_fake):
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(own_fake).chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "[[status=500]]"}])
    assert caught.value.status_code == 500
