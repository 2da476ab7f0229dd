"""The recording fake upstream: one loopback HTTP server that speaks OpenAI's wire format
(`/v1/models`, `/v1/chat/completions`, SSE with usage) and Ollama's (`/`, `/api/version`,
`/api/tags`, `/api/show`, `/api/ps`, `/api/chat`, `/api/generate`, NDJSON), answering
deterministically from the request (see `answers`).

It records every request, the requests in flight and their maximum, and which responses the
client dropped: a write that fails, or, while a response is held at the gate, a socket the peer
closed. The gate (`hold`/`release`) stops every chat response after a chosen number of chunks
(zero for a non-streaming one), so a test can prove what reached the client before the fake
finished. A marker `[[status=NNN]]` in the last message makes the fake answer that HTTP status.
A test may `script` the answers instead: a function of the model and messages that returns the
answer's text (or None for the usual words).
"""

import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .answers import answer, pieces, prompt_tokens

STATUS_MARKER = re.compile(r"\[\[status=(\d{3})\]\]")
CREATED = "2026-12-02T13:00:00Z"
GENERATION_PATHS = ("/v1/chat/completions", "/api/chat", "/api/generate")


@dataclass
class Record:
    """One request the fake received."""
    path: str
    body: dict | None
    headers: dict
    model: str | None = None
    texts: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    # "open" while answering, then "done", "dropped" (the client went away) or "error".
    state: str = "open"
    last_content: str = ""
    # Whether it counts as in flight: from its arrival until its answer's last gated chunk.
    counted: bool = False


def _normalise(model: str) -> str:
    """Ollama's rule: a name without a tag means `:latest`."""
    return model if ":" in model else model + ":latest"


class FakeUpstream:
    """The fake, listening on 127.0.0.1 at a free port until `close`."""

    def __init__(self, openai_models: list[str], ollama_models: list[str]):
        self.openai_models = list(openai_models)
        self.ollama_models = list(ollama_models)
        self._cond = threading.Condition()
        self._records: list[Record] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._gate_open = True
        self._hold_after = 0
        self._hold_when = None
        self._script = None
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ollama_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.release()
        self._server.shutdown()
        self._server.server_close()

    # Recording.
    def reset(self):
        """Forgets what was recorded and opens the gate; the maximum restarts from the requests
        still in flight."""
        with self._cond:
            self._records = []
            self._max_in_flight = self._in_flight
            self._gate_open = True
            self._script = None
            self._cond.notify_all()

    def records(self) -> list[Record]:
        with self._cond:
            return list(self._records)

    def chats(self) -> list[Record]:
        """The generation requests (chat and generate, both wires), in arrival order."""
        return [r for r in self.records() if r.path in GENERATION_PATHS]

    @property
    def in_flight(self) -> int:
        """Generation requests being answered now."""
        with self._cond:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most generation requests answered at once since the last `reset`."""
        with self._cond:
            return self._max_in_flight

    def wait_for(self, predicate, timeout: float) -> bool:
        """Waits until `predicate(self)` holds, or `timeout` seconds pass; returns whether it
        held."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    # Scripted answers.
    def script(self, answer_of):
        """From now on (until `reset`), chat answers come from `answer_of(model, messages)`:
        its text, streamed a word at a time and ending with `stop`; None keeps the usual
        answer. Called under the fake's lock, one call at a time, in arrival order."""
        with self._cond:
            self._script = answer_of

    def _answer(self, model, messages, seed, max_tokens, index=0):
        with self._cond:
            script = self._script
            text = script(model, messages) if script else None
        if text is None:
            return answer(model, messages, seed, max_tokens, index)
        return pieces(text), "stop"

    # The gate.
    def hold(self, after_chunks: int = 1, when=None):
        """From now on, chat responses (those whose record satisfies `when`, if given) stop
        after `after_chunks` chunks of a streaming answer (before anything of a non-streaming
        one) until `release`."""
        with self._cond:
            self._gate_open = False
            self._hold_after = after_chunks
            self._hold_when = when

    def release(self):
        with self._cond:
            self._gate_open = True
            self._cond.notify_all()

    # Used by the handler.
    def _begin(self, record: Record):
        with self._cond:
            self._records.append(record)
            if record.path in GENERATION_PATHS:
                record.counted = True
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._cond.notify_all()

    def _leave(self, record: Record):
        """No longer in flight. Called before the answer's last bytes are written, so that a
        client that starts its next request once it has read them never finds this one still
        counted."""
        with self._cond:
            if record.counted:
                record.counted = False
                self._in_flight -= 1
                self._cond.notify_all()

    def _end(self, record: Record, state: str):
        self._leave(record)
        with self._cond:
            record.state = state
            self._cond.notify_all()

    def _update(self):
        with self._cond:
            self._cond.notify_all()

    def _wait_gate(self, record: Record, sent_chunks: int, conn: socket.socket) -> bool:
        """Blocks while the gate holds this response; False when the peer closed meanwhile."""
        while True:
            with self._cond:
                if (self._gate_open or sent_chunks < self._hold_after
                        or (self._hold_when is not None and not self._hold_when(record))):
                    return True
                self._cond.wait(0.02)
            if _peer_closed(conn):
                return False


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the peer closed the connection: readable with nothing to read, or reset."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Dropped(Exception):
    """The client went away while the fake was answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeUpstream

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    # Plumbing.
    def _send_json(self, status: int, value, extra_headers=()):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, val in extra_headers:
            self.send_header(name, val)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_chunked(self, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes):
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as err:
            raise _Dropped from err

    def _end_chunked(self):
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError as err:
            raise _Dropped from err

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    # Routes.
    def do_HEAD(self):
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_GET(self):
        fake = self.fake
        fake._begin(record := Record(self.path, None, dict(self.headers)))
        try:
            if self.path == "/":
                data = b"Ollama is running"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path == "/api/version":
                self._send_json(200, {"version": "0.12.6"})
            elif self.path == "/api/tags":
                self._send_json(200, {"models": [_tag(m) for m in fake.ollama_models]})
            elif self.path == "/api/ps":
                self._send_json(200, {"models": []})
            elif self.path == "/v1/models":
                self._send_json(200, {"object": "list",
                                      "data": [_openai_model(m) for m in fake.openai_models]})
            elif self.path.startswith("/v1/models/"):
                name = self.path[len("/v1/models/"):]
                if name in fake.openai_models:
                    self._send_json(200, _openai_model(name))
                else:
                    self._send_json(404, _openai_error(f"model {name} not found"))
            else:
                self._send_json(404, {"error": f"no route {self.path}"})
        finally:
            fake._end(record, "done")

    def do_POST(self):
        fake = self.fake
        body = self._read_body()
        record = Record(self.path, body, dict(self.headers))
        fake._begin(record)
        state = "done"
        try:
            if self.path == "/v1/chat/completions":
                self._openai_chat(record)
            elif self.path in ("/api/chat", "/api/generate"):
                self._ollama_chat(record)
            elif self.path == "/api/show":
                name = (body or {}).get("model") or (body or {}).get("name") or ""
                if _normalise(name) in fake.ollama_models:
                    self._send_json(200, _show(_normalise(name)))
                else:
                    self._send_json(404, {"error": f"model '{name}' not found"})
            else:
                self._send_json(404, {"error": f"no route {self.path}"})
            if record.status >= 400:
                state = "error"
        except _Dropped:
            state = "dropped"
            self.close_connection = True
        except OSError:
            state = "dropped"
            self.close_connection = True
        finally:
            fake._end(record, state)

    # Chat on each wire.
    def _marker(self, record: Record, messages: list[dict]) -> int | None:
        last = messages[-1].get("content", "") if messages else ""
        record.last_content = last if isinstance(last, str) else json.dumps(last)
        found = STATUS_MARKER.search(record.last_content)
        return int(found.group(1)) if found else None

    def _openai_chat(self, record: Record):
        fake, body = self.fake, record.body
        if not isinstance(body, dict) or not body.get("messages"):
            record.status = 400
            self._send_json(400, _openai_error("messages: required"))
            return
        model, messages = body.get("model", ""), body["messages"]
        record.model = model
        if model not in fake.openai_models:
            record.status = 404
            self._send_json(404, _openai_error(f"The model `{model}` does not exist"))
            return
        status = self._marker(record, messages)
        if status is not None:
            record.status = status
            headers = [("Retry-After", "1")] if status == 429 else []
            self._send_json(status, _openai_error(f"fake upstream status {status}"), headers)
            return
        seed = body.get("seed")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        n = int(body.get("n") or 1)
        answers = [fake._answer(model, messages, seed, max_tokens, i) for i in range(n)]
        record.texts = ["".join(chunks) for chunks, _ in answers]
        record.prompt_tokens = prompt_tokens(messages)
        record.completion_tokens = sum(len(chunks) for chunks, _ in answers)
        usage = {"prompt_tokens": record.prompt_tokens,
                 "completion_tokens": record.completion_tokens,
                 "total_tokens": record.prompt_tokens + record.completion_tokens}
        rid = f"chatcmpl-fake-{id(record)}"
        fake._update()
        if not body.get("stream"):
            if not fake._wait_gate(record, 0, self.connection):
                raise _Dropped
            fake._leave(record)
            self._send_json(200, {
                "id": rid, "object": "chat.completion", "created": 1764680400, "model": model,
                "choices": [{"index": i, "finish_reason": finish,
                             "message": {"role": "assistant", "content": "".join(chunks)}}
                            for i, (chunks, finish) in enumerate(answers)],
                "usage": usage})
            return
        self._start_chunked("text/event-stream")

        def event(choices, **extra):
            chunk = {"id": rid, "object": "chat.completion.chunk", "created": 1764680400,
                     "model": model, "choices": choices, **extra}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        sent = 0
        for i, (chunks, finish) in enumerate(answers):
            for piece in chunks:
                if not fake._wait_gate(record, sent, self.connection):
                    raise _Dropped
                self._chunk(event([{"index": i, "delta": {"role": "assistant",
                                                          "content": piece},
                                    "finish_reason": None}]))
                sent += 1
            if i == len(answers) - 1:
                fake._leave(record)
            self._chunk(event([{"index": i, "delta": {}, "finish_reason": finish}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._chunk(event([], usage=usage))
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunked()

    def _ollama_chat(self, record: Record):
        fake, body = self.fake, record.body
        if not isinstance(body, dict):
            record.status = 400
            self._send_json(400, {"error": "invalid JSON"})
            return
        generate = self.path == "/api/generate"
        if generate:
            messages = ([{"role": "system", "content": body["system"]}]
                        if body.get("system") else [])
            messages.append({"role": "user", "content": body.get("prompt", "")})
        else:
            messages = body.get("messages") or []
        model = body.get("model", "")
        record.model = model
        if _normalise(model) not in fake.ollama_models:
            record.status = 404
            self._send_json(404, {"error": f"model '{model}' not found"})
            return
        if not messages:
            record.status = 400
            self._send_json(400, {"error": "messages: required"})
            return
        status = self._marker(record, messages)
        if status is not None:
            record.status = status
            headers = [("Retry-After", "1")] if status == 429 else []
            self._send_json(status, {"error": f"fake upstream status {status}"}, headers)
            return
        options = body.get("options") or {}
        chunks, finish = fake._answer(_normalise(model), messages, options.get("seed"),
                                      options.get("num_predict"))
        record.texts = ["".join(chunks)]
        record.prompt_tokens = prompt_tokens(messages)
        record.completion_tokens = len(chunks)
        fake._update()
        key = "response" if generate else "message"

        def piece(text):
            return text if generate else {"role": "assistant", "content": text}

        final = {"model": model, "created_at": CREATED, key: piece(""), "done": True,
                 "done_reason": finish, "total_duration": 2_000_000, "load_duration": 1_000,
                 "prompt_eval_count": record.prompt_tokens, "prompt_eval_duration": 500_000,
                 "eval_count": record.completion_tokens, "eval_duration": 1_000_000}
        if body.get("stream", True) is False:
            if not fake._wait_gate(record, 0, self.connection):
                raise _Dropped
            fake._leave(record)
            self._send_json(200, {**final, key: piece("".join(chunks))})
            return
        self._start_chunked("application/x-ndjson")
        for sent, text in enumerate(chunks):
            if not fake._wait_gate(record, sent, self.connection):
                raise _Dropped
            line = {"model": model, "created_at": CREATED, key: piece(text), "done": False}
            self._chunk(json.dumps(line).encode() + b"\n")
        fake._leave(record)
        self._chunk(json.dumps(final).encode() + b"\n")
        self._end_chunked()


def _openai_error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": None}}


def _openai_model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 1764680400, "owned_by": "fake"}


def _details() -> dict:
    return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
            "parameter_size": "1B", "quantization_level": "Q4_K_M"}


def _tag(name: str) -> dict:
    return {"name": name, "model": name, "modified_at": CREATED, "size": 1_000_000,
            "digest": "0" * 64, "details": _details()}


def _show(name: str) -> dict:
    return {"modelfile": f"FROM {name}", "parameters": "temperature 0.7",
            "template": "{{ .Prompt }}", "details": _details(),
            "model_info": {"general.architecture": "llama", "llama.context_length": 4096},
            "capabilities": ["completion"], "modified_at": CREATED}
