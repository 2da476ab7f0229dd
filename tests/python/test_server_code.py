"""Code strategies through `mars serve` with the real `openai` and `ollama` clients: `codet-`
and `repair-` check a Rust request's candidates against the examples its prompt shows, in the
sandbox, and answer with the one that passes; usage counts every call and what was verified;
hostile candidates (fork bombs, host-file reads, endless loops) get a normal answer or a clear
error and leave nothing for the next request. The upstream is the scripted fake on loopback."""

import itertools
import json
import os
import threading
import uuid

import openai
import pytest

from fake_upstream.mars_process import metric_sum, ollama_client, openai_client, request

PROMPT = ("Write a Rust function `fn add(a: i32, b: i32) -> i32` that returns the sum of `a` "
          "and `b`.\n\nExamples:\n- `add(2, 3)` returns `5`\n- `add(-1, 1)` returns `0`")


def rust(body: str) -> str:
    return f"Here is the function:\n\n```rust\n{body}\n```\n"


RIGHT = rust("fn add(a: i32, b: i32) -> i32 {\n    a + b\n}")
WRONG = rust("fn add(a: i32, b: i32) -> i32 {\n    a - b\n}")
TIMES = rust("fn add(a: i32, b: i32) -> i32 {\n    a * b\n}")
TESTS = "assert_eq!(add(1, 1), 2);\nassert_eq!(add(0, 7), 7);"


def is_test_request(messages) -> bool:
    return "write test cases" in messages[-1]["content"]


def script(fake, *answers, tests=TESTS):
    """The fake answers code calls with `answers` in arrival order (the last one repeated) and
    CodeT's test-generation call with `tests`."""
    queue = itertools.chain(answers, itertools.repeat(answers[-1]))
    fake.script(lambda model, messages: tests if is_test_request(messages) else next(queue))


def verification(usage) -> dict:
    return usage.model_extra["mars"]["verification"]


def code_calls(fake):
    return [r for r in fake.chats() if not is_test_request(r.body["messages"])]


def test_the_code_variants_are_listed(mars):
    names = {m.id for m in openai_client(mars).models.list()}
    for prefix in ("codet", "repair", "bon_verifier", "self_consistency_verifier",
                   "plansearch_verifier"):
        assert f"{prefix}-gpt-fake" in names, prefix
    tags = {m.model for m in ollama_client(mars).list().models}
    assert "codet-llama-fake:latest" in tags or "codet-llama-fake" in tags, tags


def test_codet_picks_the_candidate_that_passes_the_prompts_examples(mars, fake):
    script(fake, WRONG, RIGHT, TIMES)
    done = openai_client(mars).chat.completions.create(
        model="codet-gpt-fake", seed=3, messages=[{"role": "user", "content": PROMPT}])
    assert "a + b" in done.choices[0].message.content
    # Three candidates and one test-generation call, every one counted.
    chats = fake.chats()
    assert len(chats) == 4 and sum(is_test_request(r.body["messages"]) for r in chats) == 1
    assert done.usage.prompt_tokens == sum(r.prompt_tokens for r in chats)
    assert done.usage.completion_tokens == sum(r.completion_tokens for r in chats)
    assert done.usage.model_extra["mars"]["model_calls"] == 4
    checked = verification(done.usage)
    assert checked["examples"] == 2
    # The matrix: each candidate against the 2 examples and the 2 generated tests; only the
    # right one passes them.
    assert checked["generated_tests_run"] == 6 and checked["generated_tests_passed"] == 2
    assert checked["example_passes"] >= 2 and checked["over_budget"] == 0


def test_repair_shows_the_failed_example_and_answers_with_the_fix(mars, fake):
    script(fake, WRONG, RIGHT)
    done = openai_client(mars).chat.completions.create(
        model="repair-gpt-fake", seed=3, messages=[{"role": "user", "content": PROMPT}])
    assert "a + b" in done.choices[0].message.content
    calls = code_calls(fake)
    assert len(calls) == 2
    # The repair call shows the model the example its code failed, with both values.
    feedback = json.dumps(calls[1].body["messages"])
    assert "add(2, 3)" in feedback and "-1" in feedback, feedback
    checked = verification(done.usage)
    assert (checked["candidates"], checked["candidates_compiled"], checked["candidates_passed"]) \
        == (2, 2, 1)
    assert (checked["example_runs"], checked["example_passes"]) == (4, 2)
    assert done.usage.model_extra["mars"]["model_calls"] == 2


def test_the_ollama_client_gets_the_same_choice(mars, fake):
    script(fake, WRONG, RIGHT, TIMES)
    reply = ollama_client(mars).chat(model="codet-llama-fake", options={"seed": 3},
                                     messages=[{"role": "user", "content": PROMPT}])
    assert "a + b" in reply.message.content
    assert reply.eval_count == sum(r.completion_tokens for r in fake.chats())
    script(fake, WRONG, RIGHT)
    parts = list(ollama_client(mars).chat(model="repair-llama-fake", stream=True,
                                          messages=[{"role": "user", "content": PROMPT}]))
    assert "a + b" in "".join(p.message.content or "" for p in parts)
    assert [p.done for p in parts].count(True) == 1


def script_mars(fake, *answers, verdict="CORRECT"):
    """The fake answers MARS's agents (and rewrites) with `answers` in arrival order (the last
    repeated), and its verification calls with `verdict`."""
    queue = itertools.chain(answers, itertools.repeat(answers[-1]))

    def answer(model, messages):
        if "verification expert" in messages[0]["content"]:
            return f"Checked every line.\n- Overall assessment: {verdict}\n- Confidence: 8/10"
        return next(queue)
    fake.script(answer)


def test_mars_verifier_counts_only_code_that_passes_as_verified(mars, fake):
    # Lightweight (max_tokens <= 4000): 2 agents. The model calls both CORRECT; only the code
    # that adds passes the prompt's examples, so it is the one verified solution.
    script_mars(fake, WRONG, RIGHT)
    done = openai_client(mars).chat.completions.create(
        model="mars_verifier-gpt-fake", seed=3, max_tokens=256,
        messages=[{"role": "user", "content": PROMPT}])
    assert "a + b" in done.choices[0].message.content
    chats = fake.chats()
    # 2 agents and one verification each, every one counted.
    assert len(chats) == 4
    assert done.usage.model_extra["mars"]["model_calls"] == 4
    assert done.usage.prompt_tokens == sum(r.prompt_tokens for r in chats)
    assert done.usage.completion_tokens == sum(r.completion_tokens for r in chats)
    checked = verification(done.usage)
    assert (checked["candidates"], checked["candidates_passed"]) == (2, 1)


def test_mars_answers_the_ollama_client_and_counts_every_call(mars, fake):
    # Every verdict INCORRECT: 2 agents, 2 verifications each, 2 rounds of 2 improvements and
    # 4 verifications, then the two equal answers agree: 2 + 4 + 2 * (2 + 4) calls.
    script_mars(fake, RIGHT, verdict="INCORRECT")
    parts = list(ollama_client(mars).chat(model="mars-llama-fake", stream=True,
                                          options={"num_predict": 256},
                                          messages=[{"role": "user", "content": PROMPT}]))
    assert "a + b" in "".join(p.message.content or "" for p in parts)
    final = [p for p in parts if p.done]
    assert len(final) == 1
    assert len(fake.chats()) == 18
    assert final[0].eval_count == sum(r.completion_tokens for r in fake.chats())


def test_a_request_without_rust_code_to_check_is_a_400_that_says_why(mars, fake):
    for model in ("codet-gpt-fake", "repair-gpt-fake", "bon_verifier-gpt-fake"):
        with pytest.raises(openai.BadRequestError) as caught:
            openai_client(mars).chat.completions.create(
                model=model, messages=[{"role": "user", "content": "What is six times seven?"}])
        message = caught.value.body["message"]
        assert "Rust function" in message and "verif" in message, message
    assert fake.chats() == []


def test_a_streamed_code_strategy_sends_keep_alives_while_candidates_run(start_mars, fake):
    server = start_mars("--keep-alive", "1")
    loop = rust("fn add(a: i32, b: i32) -> i32 {\n    loop {}\n}")
    script(fake, loop, RIGHT)
    body = json.dumps({"model": "repair-gpt-fake", "stream": True,
                       "messages": [{"role": "user", "content": PROMPT}]}).encode()
    status, _, text = request(server.openai_url + "/chat/completions", "POST", body,
                              {"content-type": "application/json"}, timeout=120)
    assert status == 200, text
    # The endless loop runs into the sandbox's 5 s wall limit: keep-alives flow meanwhile.
    assert ": keep-alive" in text.split("a + b")[0], text[:2000]
    assert "a + b" in text and text.rstrip().endswith("data: [DONE]")


HOSTILE = {
    "fork bomb": "fn add(a: i32, b: i32) -> i32 {\n"
                 "    loop { let _ = std::process::Command::new(\"/proc/self/exe\").spawn(); }\n"
                 "}",
    "endless loop": "fn add(a: i32, b: i32) -> i32 {\n    let mut x = a; loop { x = x.wrapping_add(b); }\n}",
    "reads a host file": "fn add(a: i32, b: i32) -> i32 {\n"
                         "    let secret = std::fs::read_to_string(\"{canary}\").unwrap_or_default();\n"
                         "    panic!(\"{{}}\", secret);\n"
                         "}",
    "leaves a file": "fn add(a: i32, b: i32) -> i32 {\n"
                     "    std::fs::write(\"/tmp/mars-left-{tag}\", \"left\").ok();\n"
                     "    a + b\n"
                     "}",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_candidates_get_a_normal_answer_and_leak_nothing(mars, fake, kind, tmp_path):
    secret = f"mars-secret-{uuid.uuid4()}"
    canary = tmp_path / "canary.txt"
    canary.write_text(secret)
    os.chmod(tmp_path, 0o755)
    os.chmod(canary, 0o644)
    tag = uuid.uuid4().hex
    hostile = rust(HOSTILE[kind].replace("{canary}", str(canary)).replace("{tag}", tag))
    script(fake, hostile, RIGHT)
    done = openai_client(mars).chat.completions.create(
        model="repair-gpt-fake", seed=1, messages=[{"role": "user", "content": PROMPT}])
    answer = done.choices[0].message.content
    assert "a + b" in answer, answer
    checked = verification(done.usage)
    # The file-leaving candidate is right otherwise, so it passes at once.
    tries = 1 if kind == "leaves a file" else 2
    assert checked["candidates"] == tries and checked["candidates_passed"] == 1, checked
    # Nothing of the host reached the model or the client.
    for call in fake.chats():
        assert secret not in json.dumps(call.body)
    assert secret not in answer
    # What the candidate wrote stayed in its jail, gone with it.
    assert not os.path.exists(f"/tmp/mars-left-{tag}")
    # The next request reads nothing the last one left.
    script(fake, rust("fn add(a: i32, b: i32) -> i32 {\n"
                      f"    std::fs::read_to_string(\"/tmp/mars-left-{tag}\").map(|_| 0).unwrap_or(a + b)\n"
                      "}"))
    again = openai_client(mars).chat.completions.create(
        model="repair-gpt-fake", seed=1, messages=[{"role": "user", "content": PROMPT}])
    assert verification(again.usage)["candidates_passed"] == 1


def test_the_sandbox_budget_ends_checking_with_a_normal_answer(start_mars, fake):
    server = start_mars("--sandbox-budget", "1")
    loop = rust("fn add(a: i32, b: i32) -> i32 {\n    loop {}\n}")
    script(fake, loop, RIGHT)
    done = openai_client(server).chat.completions.create(
        model="repair-gpt-fake", messages=[{"role": "user", "content": PROMPT}])
    checked = verification(done.usage)
    # The loop used the request's whole second; nothing more was checked.
    assert checked["over_budget"] >= 1, checked
    assert done.choices[0].message.content
    _, _, metrics = request(server.url + "/metrics")
    assert metric_sum(metrics, "mars_verifier_total") >= 1
    assert 'mars_verifier_total{kind="over_budget"}' in metrics


def test_concurrent_requests_share_the_sandbox_bound_and_get_their_own_answers(start_mars, fake):
    server = start_mars("--max-sandbox-runs", "1")
    fake.script(lambda model, messages: RIGHT if "add" in messages[-1]["content"] else None)
    results, failures = [], []

    def ask():
        try:
            done = openai_client(server).chat.completions.create(
                model="bon_verifier-gpt-fake", messages=[{"role": "user", "content": PROMPT}])
            results.append(done)
        except Exception as err:  # noqa: BLE001 - reported below
            failures.append(err)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not failures, failures
    assert len(results) == 3
    for done in results:
        assert "a + b" in done.choices[0].message.content
        assert verification(done.usage)["candidates"] == 3
    _, _, metrics = request(server.url + "/metrics")
    assert 'mars_verifier_total{kind="requests"} 3' in metrics, metrics


def test_without_a_sandbox_the_code_strategies_are_refused(start_mars, fake):
    server = start_mars("--sandbox", "off")
    names = {m.id for m in openai_client(server).models.list()}
    assert "codet-gpt-fake" not in names and "moa-gpt-fake" in names
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(server).chat.completions.create(
            model="codet-gpt-fake", messages=[{"role": "user", "content": PROMPT}])
    assert "needs a verifier" in caught.value.body["message"]
    assert fake.chats() == []
