"""`mars serve`'s Ollama API through the real `ollama` client: list, show, ps, chat and
generate, streaming and not; and the same prompt through both clients giving the same answer
and token totals."""

import json
import threading

import pytest

from fake_upstream.mars_process import ollama_client, openai_client, request

QUESTION = "What is six times seven?"
REREAD = f"{QUESTION}\nRead the question again: {QUESTION}"


def totals(fake) -> tuple[int, int]:
    chats = fake.chats()
    return (sum(r.prompt_tokens for r in chats), sum(r.completion_tokens for r in chats))


def test_the_root_and_version_answer_like_ollama(mars):
    status, _, body = mars.get("/")
    assert (status, body) == (200, "Ollama is running")
    status, _, _ = request(mars.url + "/", "HEAD")
    assert status == 200
    status, _, body = mars.get("/api/version")
    assert status == 200 and json.loads(body)["version"]


def test_list_names_every_base_model_and_its_variants(mars):
    models = ollama_client(mars).list().models
    names = {m.model for m in models}
    assert {"llama-fake:latest", "qwen-fake:0.5b", "gpt-fake"} <= names
    assert {"moa-llama-fake:latest", "mixture_of_agents-llama-fake:latest"} & names, names
    for model in models:
        assert model.modified_at is not None and model.details is not None
    raw = json.loads(mars.get("/api/tags")[2])["models"]
    for entry in raw:
        assert {"name", "model", "modified_at", "size", "digest", "details"} <= set(entry), entry
        assert entry["name"] and entry["model"]


@pytest.mark.parametrize("model", ["llama-fake", "moa-llama-fake", "gpt-fake"])
def test_show_describes_a_model_and_a_variant(mars, model):
    shown = ollama_client(mars).show(model)
    assert shown.modelinfo is not None
    assert shown.details is not None
    assert shown.template is not None
    assert shown.parameters is not None
    assert "completion" in (shown.capabilities or [])
    # `name` is accepted as well as `model`.
    status, _, body = request(mars.url + "/api/show", "POST",
                              json.dumps({"name": model}).encode(),
                              {"Content-Type": "application/json"})
    assert status == 200 and "model_info" in json.loads(body)


def test_ps_answers(mars):
    assert isinstance(list(ollama_client(mars).ps().models), list)


def test_chat_without_streaming(mars, fake):
    done = ollama_client(mars).chat(model="re2-llama-fake",
                                    messages=[{"role": "user", "content": QUESTION}],
                                    options={"seed": 3}, stream=False)
    [seen] = fake.chats()
    assert seen.last_content == REREAD
    assert done.model == "re2-llama-fake"
    assert done.message.role == "assistant"
    assert done.message.content == seen.texts[0]
    assert done.done is True and done.done_reason == "stop"
    assert (done.prompt_eval_count, done.eval_count) == totals(fake)
    assert isinstance(done.total_duration, int) and done.total_duration > 0
    assert isinstance(done.eval_duration, int)


def test_chat_streaming_equals_chat_without(mars, fake):
    client = ollama_client(mars)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": QUESTION}]
    whole = client.chat(model="moa-llama-fake", messages=messages, options={"seed": 3},
                        stream=False)
    whole_totals = totals(fake)
    fake.reset()
    parts = list(client.chat(model="moa-llama-fake", messages=messages, options={"seed": 3},
                             stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    final = parts[-1]
    assert final.done_reason == "stop"
    assert (final.prompt_eval_count, final.eval_count) == totals(fake) == whole_totals
    assert len(fake.chats()) == 4
    assert all(r.body["messages"][0]["role"] == "system" for r in fake.chats())


def test_keep_alive_records_while_a_strategy_runs_do_not_break_the_client(start_mars, fake):
    server = start_mars("--keep-alive", "1")
    aggregation = lambda record: record.last_content.startswith("Original question:")  # noqa: E731
    fake.hold(after_chunks=0, when=aggregation)
    parts, failures = [], []

    def consume():
        try:
            for part in ollama_client(server).chat(
                    model="moa-llama-fake", messages=[{"role": "user", "content": QUESTION}],
                    options={"seed": 2}, stream=True):
                parts.append(part)
        except Exception as err:  # noqa: BLE001 - reported below
            failures.append(err)

    reader = threading.Thread(target=consume)
    reader.start()
    try:
        # Records reach the client while the fake still holds the aggregation.
        assert fake.wait_for(lambda f: len(parts) >= 2 or failures, timeout=30), parts
        assert fake.chats()[-1].state == "open" and aggregation(fake.chats()[-1])
    finally:
        fake.release()
    reader.join(60)
    assert not failures, failures
    assert "".join(p.message.content or "" for p in parts) == fake.chats()[-1].texts[0]
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done


@pytest.mark.parametrize("stream", [False, True])
def test_the_latest_tag_is_implied_and_a_baseline_is_relayed(mars, fake, stream):
    answer = ollama_client(mars).chat(model="llama-fake",
                                      messages=[{"role": "user", "content": QUESTION}],
                                      options={"seed": 6}, stream=stream)
    parts = list(answer) if stream else [answer]
    [seen] = fake.chats()
    assert seen.model in ("llama-fake", "llama-fake:latest")
    assert "".join(p.message.content or "" for p in parts) == seen.texts[0]
    assert [p.done for p in parts].count(True) == 1 and parts[-1].done
    assert (parts[-1].prompt_eval_count, parts[-1].eval_count) == totals(fake)


@pytest.mark.parametrize("stream", [False, True])
def test_generate(mars, fake, stream):
    client = ollama_client(mars)
    answer = client.generate(model="re2-llama-fake", prompt=QUESTION, options={"seed": 4},
                             stream=stream)
    parts = list(answer) if stream else [answer]
    text = "".join(p.response or "" for p in parts)
    [seen] = fake.chats()
    assert seen.last_content == REREAD
    assert text == seen.texts[0]
    final = parts[-1]
    assert final.done is True and final.done_reason == "stop"
    assert [p.done for p in parts].count(True) == 1
    assert (final.prompt_eval_count, final.eval_count) == totals(fake)
    assert final.model == "re2-llama-fake"


@pytest.mark.parametrize("model", ["moa-llama-fake", "moa-gpt-fake"])
def test_both_clients_get_the_same_text_and_token_totals(mars, fake, model):
    messages = [{"role": "user", "content": QUESTION}]
    via_openai = openai_client(mars).chat.completions.create(model=model, messages=messages,
                                                             seed=8)
    openai_totals = totals(fake)
    fake.reset()
    via_ollama = ollama_client(mars).chat(model=model, messages=messages,
                                          options={"seed": 8}, stream=False)
    assert via_ollama.message.content == via_openai.choices[0].message.content
    assert (via_ollama.prompt_eval_count, via_ollama.eval_count) == (
        via_openai.usage.prompt_tokens, via_openai.usage.completion_tokens)
    assert totals(fake) == openai_totals


@pytest.mark.parametrize("keep_alive", [300, "5m"])
def test_options_and_keep_alive_reach_every_inner_call(mars, fake, keep_alive):
    ollama_client(mars).chat(model="moa-llama-fake",
                             messages=[{"role": "user", "content": QUESTION}],
                             options={"seed": 5, "top_p": 0.5, "temperature": 0.3,
                                      "num_predict": 4},
                             keep_alive=keep_alive, stream=False)
    chats = fake.chats()
    assert len(chats) == 4
    for call in chats:
        options = call.body["options"]
        assert options["top_p"] == pytest.approx(0.5)
        assert options["temperature"] == pytest.approx(0.3)
        assert options["num_predict"] == 4
        # As given, or as a duration string Ollama parses to the same time.
        seconds = {300: {300, 300.0, "300s", "300.0s", "5m", "5m0s"}, "5m": {"5m", "5m0s", "300s"}}
        assert call.body["keep_alive"] in seconds[keep_alive]
    assert len({call.body["options"]["seed"] for call in chats[:3]}) == 3
