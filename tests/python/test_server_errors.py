"""`mars serve`'s errors through the real `openai` and `ollama` clients: each status class in
each API's own shape, and no strategy run twice under the SDK's default retries."""

import json

import ollama
import openai
import pytest

from fake_upstream.mars_process import ollama_client, openai_client, request

QUESTION = [{"role": "user", "content": "What is six times seven?"}]
ERROR_FIELDS = {"message", "type", "param", "code"}


def assert_openai_error(err: openai.APIStatusError, status: int, names: str | None = None):
    """The error has the status, OpenAI's shape, `x-should-retry: false` and, if given, names
    the field `names`."""
    assert err.status_code == status, err
    assert isinstance(err.body, dict) and ERROR_FIELDS <= set(err.body), err.body
    assert err.response.headers.get("x-should-retry") == "false"
    if names is not None:
        assert names == err.body["param"] or names in err.body["message"], err.body


def assert_no_request_was_repeated(fake):
    """Every body the fake received is distinct: the SDK's retries re-ran nothing."""
    bodies = [json.dumps(r.body, sort_keys=True) for r in fake.chats()]
    assert len(bodies) == len(set(bodies)), bodies


@pytest.mark.parametrize(("model", "kwargs", "field"), [
    ("gpt-fake", {"messages": []}, "messages"),
    ("gpt-fake", {"max_tokens": -1}, "max_tokens"),
    ("re2-gpt-fake", {"max_tokens": -1}, "max_tokens"),
    ("gpt-fake", {"n": 9}, "n"),
    ("re2-gpt-fake", {"n": 9}, "n"),
    ("gpt-fake", {"temperature": "hot"}, "temperature"),
    ("re2-gpt-fake", {"temperature": "hot"}, "temperature"),
    ("re2-gpt-fake", {"messages": []}, "messages"),
    ("moa-gpt-fake", {"tools": [{"type": "function", "function": {"name": "f",
                                                                  "parameters": {}}}]}, "tools"),
    ("moa-gpt-fake", {"response_format": {"type": "json_object"}}, "response_format"),
])
def test_bad_input_is_a_400_naming_the_field(mars, fake, model, kwargs, field):
    client = openai_client(mars)
    call = {"model": model, "messages": QUESTION, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**call)
    assert_openai_error(caught.value, 400, field)
    assert fake.chats() == []


def test_a_baseline_request_relays_the_fields_a_strategy_would_refuse(mars, fake):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    openai_client(mars).chat.completions.create(
        model="gpt-fake", messages=QUESTION, tools=tools,
        response_format={"type": "json_object"})
    [seen] = fake.chats()
    assert seen.body["tools"] == tools
    assert seen.body["response_format"] == {"type": "json_object"}


def test_malformed_json_is_a_400_in_each_apis_shape(mars, fake):
    status, headers, body = request(mars.url + "/v1/chat/completions", "POST", b"{not json",
                                    {"Content-Type": "application/json"})
    assert status == 400
    assert ERROR_FIELDS <= set(json.loads(body)["error"])
    status, _, body = request(mars.url + "/api/chat", "POST", b"{not json",
                              {"Content-Type": "application/json"})
    assert status == 400
    assert isinstance(json.loads(body)["error"], str)
    assert fake.chats() == []


@pytest.mark.parametrize(("model", "extra", "content"), [
    ("gpt-fake", {"optillm_approach": "nosuch"}, "Hi"),
    ("gpt-fake", {"mars_strategy": "re2&nosuch"}, "Hi"),
    ("gpt-fake", {}, "<optillm_approach>nosuch</optillm_approach>Hi"),
    # A pipeline prefix is a strategy spec, and each of its stages is validated.
    ("re2&nosuch-gpt-fake", {}, "Hi"),
])
def test_an_unknown_strategy_is_a_400_naming_it_and_listing_the_valid_ones(mars, fake, model,
                                                                          extra, content):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(mars).chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}], extra_body=extra)
    assert_openai_error(caught.value, 400, None)
    message = caught.value.body["message"]
    assert "nosuch" in message
    assert "mixture_of_agents" in message and "reread" in message
    assert fake.chats() == []


def test_a_strategy_that_needs_a_verifier_is_refused(mars, fake):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(mars).chat.completions.create(model="bon_verifier-gpt-fake",
                                                    messages=QUESTION)
    assert_openai_error(caught.value, 400, None)
    assert "verifier" in caught.value.body["message"]
    assert fake.chats() == []


def test_an_unknown_model_is_a_404_listing_the_models(mars, fake):
    for model in ("no-such-model", "moa-no-such-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            openai_client(mars).chat.completions.create(model=model, messages=QUESTION)
        assert_openai_error(caught.value, 404, None)
        assert "gpt-fake" in caught.value.body["message"]
        assert "llama-fake" in caught.value.body["message"]
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client(mars).chat(model="no-such-model", messages=QUESTION)
    assert caught.value.status_code == 404
    assert "llama-fake" in caught.value.error
    assert fake.chats() == []


def test_a_wrong_or_missing_key_is_a_401_on_both_apis_but_health_is_open(start_mars, fake):
    server = start_mars("--api-key", "mars-secret")
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(server, api_key="wrong").chat.completions.create(model="gpt-fake",
                                                                      messages=QUESTION)
    assert_openai_error(caught.value, 401, None)
    with pytest.raises(openai.AuthenticationError):
        openai_client(server, api_key="wrong").models.list()
    assert server.get("/health")[0] == 200
    assert server.get("/v1/models")[0] == 401
    assert server.get("/metrics")[0] == 401
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client(server).list()
    assert caught.value.status_code == 401
    assert fake.chats() == []
    # The right key opens both APIs, and it is not the upstream's: it is never forwarded.
    done = openai_client(server, api_key="mars-secret").chat.completions.create(
        model="gpt-fake", messages=QUESTION)
    assert done.choices[0].message.content == fake.chats()[0].texts[0]
    authorised = ollama_client(server, headers={"Authorization": "Bearer mars-secret"})
    assert "llama-fake:latest" in {m.model for m in authorised.list().models}
    assert all("mars-secret" not in str(r.headers) for r in fake.records())


def test_a_body_over_the_limit_is_a_413(start_mars, fake):
    server = start_mars("--max-body-bytes", "4096")
    big = [{"role": "user", "content": "word " * 2000}]
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(server).chat.completions.create(model="gpt-fake", messages=big)
    assert caught.value.status_code == 413
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client(server).chat(model="llama-fake", messages=big)
    assert caught.value.status_code == 413
    assert fake.chats() == []


def test_an_upstream_429_is_a_429_with_retry_after(mars, fake):
    marked = [{"role": "user", "content": "[[status=429]] busy?"}]
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(mars, max_retries=0).chat.completions.create(model="gpt-fake",
                                                                   messages=marked)
    assert caught.value.status_code == 429
    assert caught.value.response.headers.get("retry-after")
    assert fake.chats(), "the upstream was asked"


def test_an_upstream_failure_is_a_502_and_the_sdk_does_not_rerun_the_strategy(mars, fake):
    marked = [{"role": "user", "content": "[[status=500]] fail, please"}]
    # The SDK's defaults: two retries on a 5xx unless the server says not to.
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client(mars).chat.completions.create(model="moa-gpt-fake", messages=marked,
                                                    seed=3)
    assert_openai_error(caught.value, 502, None)
    # One run of MoA: at most its three proposals, none of them twice.
    assert 1 <= len(fake.chats()) <= 3
    assert_no_request_was_repeated(fake)
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client(mars).chat(model="re2-llama-fake", messages=marked, stream=False)
    assert caught.value.status_code == 502


def test_an_upstream_timeout_is_a_504_and_the_sdk_does_not_rerun_the_strategy(start_mars,
                                                                               fake):
    server = start_mars("--request-timeout", "1")
    fake.hold(after_chunks=0)
    with pytest.raises(openai.InternalServerError) as caught:
        openai_client(server).chat.completions.create(model="re2-gpt-fake", messages=QUESTION)
    assert_openai_error(caught.value, 504, None)
    assert len(fake.chats()) == 1
    assert_no_request_was_repeated(fake)
    # The timed-out call was cancelled: the fake sees its connection closed.
    assert fake.wait_for(lambda f: f.chats()[0].state == "dropped", timeout=10)
