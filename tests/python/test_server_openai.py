"""`mars serve` through the real `openai` SDK: the model list, strategies chosen by name, body
field and tag, usage equal to what the fake upstream reported, real streaming."""

import threading

import openai
import pytest

from conftest import OLLAMA_MODELS, OPENAI_MODELS
from fake_upstream import text_of
from fake_upstream.mars_process import openai_client

QUESTION = "What is six times seven?"
REREAD = f"{QUESTION}\nRead the question again: {QUESTION}"
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "Seven."},
    {"role": "user", "content": QUESTION},
]


def ask(client, model, messages=None, **kwargs):
    """One non-streaming call: (headers, completion)."""
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=messages or [{"role": "user", "content": QUESTION}], **kwargs)
    return raw.headers, raw.parse()


def mars_usage(usage) -> dict:
    """`usage.mars` ({strategy, model_calls}), which the SDK keeps as an extra field."""
    extra = usage.model_extra or {}
    assert "mars" in extra, f"usage has no `mars` field: {usage}"
    return extra["mars"]


def assert_usage_is_the_fakes(usage, fake):
    """The usage is the sum over what the fake reported, and counts its calls."""
    chats = fake.chats()
    assert usage.prompt_tokens == sum(r.prompt_tokens for r in chats)
    assert usage.completion_tokens == sum(r.completion_tokens for r in chats)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert mars_usage(usage)["model_calls"] == len(chats)


def first_content(chunks, deadline_s: float = 30):
    """Reads `chunks` (in a thread, so that a server that buffers cannot hang the test) up to
    the first chunk with content; returns that content, or None when none came before the
    deadline."""
    got, finished = [], threading.Event()

    def read():
        try:
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
                    break
        finally:
            finished.set()

    threading.Thread(target=read, daemon=True).start()
    finished.wait(deadline_s)
    return got[0] if got else None


def test_the_model_list_has_every_base_model_and_its_strategy_variants(mars):
    client = openai_client(mars)
    ids = {m.id for m in client.models.list()}
    assert set(OPENAI_MODELS) | set(OLLAMA_MODELS) <= ids
    for base in ("gpt-fake", "llama-fake:latest"):
        assert {f"moa-{base}", f"mixture_of_agents-{base}"} & ids, (base, sorted(ids))
        assert {f"re2-{base}", f"reread-{base}"} & ids, (base, sorted(ids))
    assert client.models.retrieve("gpt-fake").id == "gpt-fake"
    assert client.models.retrieve("moa-gpt-fake").id == "moa-gpt-fake"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_strategy_call_reports_the_fakes_usage_and_keeps_the_conversation(mars, fake):
    headers, done = ask(openai_client(mars), "moa-gpt-fake", CONVERSATION, seed=11)
    chats = fake.chats()
    # MoA with the server's default of three proposers: three proposals, one aggregation.
    assert len(chats) == 4
    assert_usage_is_the_fakes(done.usage, fake)
    assert mars_usage(done.usage)["strategy"] == "mixture_of_agents"
    assert headers["x-mars-strategy"] == "mixture_of_agents"
    assert headers["x-mars-model-calls"] == "4"
    assert headers["x-request-id"]
    assert done.model == "moa-gpt-fake"
    assert {r.model for r in chats} == {"gpt-fake"}
    assert done.choices[0].message.content == chats[-1].texts[0]
    assert done.choices[0].finish_reason == "stop"
    # The proposers got the real message list, turn by turn, not a flattened string.
    for proposal in chats[:3]:
        turns = proposal.body["messages"]
        assert [m["role"] for m in turns] == ["system", "user", "assistant", "user"]
        assert turns[0]["content"].startswith("You are terse.")
        assert [m["content"] for m in turns[1:]] == ["Name a prime.", "Seven.", QUESTION]


def test_streaming_baseline_sends_the_first_chunk_before_the_fake_has_finished(mars, fake):
    client = openai_client(mars)
    fake.hold(after_chunks=1)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-fake", messages=[{"role": "user", "content": QUESTION}], seed=4,
        stream=True, stream_options={"include_usage": True})
    assert raw.headers["x-mars-strategy"] == "baseline"
    assert raw.headers["x-request-id"]
    chunks = iter(raw.parse())
    first = first_content(chunks)
    if first is None:
        fake.release()
    assert first is not None, "the first token did not reach the client while the fake held"
    expected = text_of("gpt-fake", [{"role": "user", "content": QUESTION}], 4)
    assert first == expected.split(" ")[0] + " "
    # The fake is still holding the rest: what arrived was relayed, not buffered.
    assert [r.state for r in fake.chats()] == ["open"]
    fake.release()
    rest = list(chunks)
    text = first + "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == expected
    finishes = [c.choices[0].finish_reason for c in rest if c.choices
                and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert rest[-1].usage is not None
    assert rest[-1].usage.prompt_tokens == fake.chats()[0].prompt_tokens
    assert rest[-1].usage.completion_tokens == fake.chats()[0].completion_tokens


def test_a_streamed_baseline_reports_usage_mars_like_every_response(mars, fake):
    chunks = list(openai_client(mars).chat.completions.create(
        model="gpt-fake", messages=[{"role": "user", "content": QUESTION}], seed=4,
        stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert_usage_is_the_fakes(chunks[-1].usage, fake)
    assert mars_usage(chunks[-1].usage) == {"strategy": "baseline", "model_calls": 1}


def test_streaming_moa_gives_the_non_streaming_text_and_usage(mars, fake):
    client = openai_client(mars)
    _, whole = ask(client, "moa-gpt-fake", seed=5)
    fake.reset()
    chunks = list(client.chat.completions.create(
        model="moa-gpt-fake", messages=[{"role": "user", "content": QUESTION}], seed=5,
        stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks
                if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    assert_usage_is_the_fakes(usage, fake)
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert mars_usage(usage) == {"strategy": "mixture_of_agents", "model_calls": 4}


def test_streaming_moa_relays_the_aggregation_as_it_comes(mars, fake):
    aggregation = lambda record: record.last_content.startswith("Original question:")  # noqa: E731
    fake.hold(after_chunks=1, when=aggregation)
    stream = openai_client(mars).chat.completions.create(
        model="moa-gpt-fake", messages=[{"role": "user", "content": QUESTION}], seed=5,
        stream=True)
    chunks = iter(stream)
    first = first_content(chunks)
    if first is None:
        fake.release()
    assert first is not None, \
        "the aggregator's first token did not reach the client while the fake held the rest"
    # It was the aggregator's first token, sent while the fake held the rest of its answer.
    assert [aggregation(r) for r in fake.chats()] == [False, False, False, True]
    assert fake.chats()[-1].state == "open"
    assert first == fake.chats()[-1].texts[0].split(" ")[0] + " "
    fake.release()
    rest = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert first + rest == fake.chats()[-1].texts[0]


def test_n_gives_that_many_choices(mars, fake):
    client = openai_client(mars)
    _, relayed = ask(client, "gpt-fake", seed=3, n=2)
    assert [c.index for c in relayed.choices] == [0, 1]
    produced = [t for r in fake.chats() for t in r.texts]
    assert sorted(c.message.content for c in relayed.choices) == sorted(produced)
    assert_usage_is_the_fakes(relayed.usage, fake)

    fake.reset()
    headers, reread = ask(client, "re2-gpt-fake", seed=3, n=2)
    assert [c.index for c in reread.choices] == [0, 1]
    assert headers["x-mars-strategy"] == "reread"
    produced = [t for r in fake.chats() for t in r.texts]
    for choice in reread.choices:
        assert choice.message.content in produced
        assert choice.finish_reason == "stop"
    assert all(r.last_content == REREAD for r in fake.chats())
    assert_usage_is_the_fakes(reread.usage, fake)


def test_alternatives_give_one_choice_each_in_order(mars, fake):
    _, done = ask(openai_client(mars), "re2|moa-gpt-fake", seed=9)
    assert [c.index for c in done.choices] == [0, 1]
    chats = fake.chats()
    reread = [r for r in chats if r.last_content == REREAD]
    aggregation = [r for r in chats if r.last_content.startswith("Original question:")]
    assert len(reread) == 1 and len(aggregation) == 1 and len(chats) == 5
    assert done.choices[0].message.content == reread[0].texts[0]
    assert done.choices[1].message.content == aggregation[0].texts[0]
    assert_usage_is_the_fakes(done.usage, fake)


def test_the_body_fields_choose_the_strategy(mars, fake):
    client = openai_client(mars)
    headers, done = ask(client, "gpt-fake", seed=2, extra_body={"optillm_approach": "re2"})
    assert headers["x-mars-strategy"] == "reread"
    assert [r.last_content for r in fake.chats()] == [REREAD]
    assert done.model == "gpt-fake"
    assert done.choices[0].message.content == fake.chats()[0].texts[0]

    fake.reset()
    headers, done = ask(client, "gpt-fake", seed=2, extra_body={"mars_strategy": "moa"})
    assert headers["x-mars-strategy"] == "mixture_of_agents"
    assert len(fake.chats()) == 4
    assert_usage_is_the_fakes(done.usage, fake)
    # The field is mars's: the upstream never sees it.
    assert all("mars_strategy" not in r.body and "optillm_approach" not in r.body
               for r in fake.chats())


def test_the_tag_chooses_the_strategy_and_is_stripped(mars, fake):
    tagged = [{"role": "user", "content": f"<optillm_approach>re2</optillm_approach>{QUESTION}"}]
    headers, done = ask(openai_client(mars), "gpt-fake", tagged, seed=2)
    assert headers["x-mars-strategy"] == "reread"
    assert [r.last_content for r in fake.chats()] == [REREAD]
    assert "optillm_approach" not in str(fake.chats()[0].body)
    assert done.choices[0].message.content == fake.chats()[0].texts[0]


def test_a_pipeline_feeds_each_answer_to_the_next_stage(mars, fake):
    headers, done = ask(openai_client(mars), "re2&moa-gpt-fake", seed=6)
    chats = fake.chats()
    assert len(chats) == 5
    assert headers["x-mars-strategy"] == "reread&mixture_of_agents"
    assert mars_usage(done.usage)["strategy"] == "reread&mixture_of_agents"
    assert chats[0].last_content == REREAD
    # MoA's proposers were asked ReRead's answer.
    assert [r.last_content for r in chats[1:4]] == [chats[0].texts[0]] * 3
    assert done.choices[0].message.content == chats[4].texts[0]
    assert_usage_is_the_fakes(done.usage, fake)
    assert done.model == "re2&moa-gpt-fake"


def test_an_upstream_model_named_like_a_prefix_is_a_model(mars, fake):
    headers, done = ask(openai_client(mars), "moa-gpt-fake-mini", seed=1)
    assert headers["x-mars-strategy"] == "baseline"
    assert [r.model for r in fake.chats()] == ["moa-gpt-fake-mini"]
    assert done.model == "moa-gpt-fake-mini"
    assert done.choices[0].message.content == text_of(
        "moa-gpt-fake-mini", [{"role": "user", "content": QUESTION}], 1)
    assert mars_usage(done.usage) == {"strategy": "baseline", "model_calls": 1}


def test_the_requests_sampling_options_reach_every_inner_call(mars, fake):
    _, done = ask(openai_client(mars), "moa-gpt-fake", seed=12, temperature=0.3, top_p=0.5,
                  max_tokens=5, stop=["zzz"])
    chats = fake.chats()
    assert len(chats) == 4
    for call in chats:
        assert call.body["temperature"] == pytest.approx(0.3)
        assert call.body["top_p"] == pytest.approx(0.5)
        assert call.body.get("max_tokens", call.body.get("max_completion_tokens")) == 5
        assert call.body["stop"] in (["zzz"], "zzz")
    # The proposers sample: each gets its own seed, derived from the request's.
    assert len({call.body["seed"] for call in chats[:3]}) == 3
    assert done.choices[0].finish_reason == "length"
