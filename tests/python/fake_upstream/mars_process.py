"""`mars serve` as a child process for the tests: started on 127.0.0.1 port 0, its address
read from the first stdout line, its stderr kept for failure messages, stopped with SIGTERM."""

import os
import re
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

LISTENING = re.compile(r"mars serve listening on (http://127\.0\.0\.1:\d+)")
BUILD_HINT = ("build it with `cargo build -p mars-server` (CI's `cargo test --workspace` builds "
              "it), or set MARS_BIN to the binary")


def find_mars_binary(repo_root: Path) -> Path:
    """MARS_BIN, else `target/debug/mars` under the repository root."""
    named = os.environ.get("MARS_BIN")
    return Path(named) if named else repo_root / "target/debug/mars"


class MarsServer:
    """One `mars serve` process; `url` is its base URL."""

    def __init__(self, binary: Path, *args: str, env: dict | None = None,
                 start_timeout: float = 60):
        self.args = ["serve", "--listen", "127.0.0.1:0", *args]
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("OPENAI_API_KEY", "MARS_API_KEY")}
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(binary), *self.args], stdout=subprocess.PIPE,
                                     stderr=self._stderr, stdin=subprocess.DEVNULL, text=True,
                                     env={**clean, **(env or {})})
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(start_timeout)
        line = first[0].rstrip("\n") if first else ""
        found = LISTENING.fullmatch(line)
        if not found:
            self.stop()
            raise AssertionError(
                f"`mars {' '.join(self.args)}` did not print `mars serve listening on "
                f"http://IP:PORT` first (got {line!r}); stderr:\n{self.stderr()}")
        self.url = found.group(1)
        # Keep draining stdout so that the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-8000:]

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, str]:
        """A plain GET without any proxy: (status, headers, body)."""
        return request(self.url + path, headers=headers)

    def metrics(self) -> str:
        return self.get("/metrics")[2]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, method: str = "GET", data: bytes | None = None,
            headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, str]:
    """One HTTP request straight to `url` (never through a proxy): (status, headers, body),
    error statuses included."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _DIRECT.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def metric_sum(text: str, name_part: str) -> float | None:
    """The sum of the samples of every metric whose name contains `name_part` (Prometheus text
    format); None when there is none."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.split(r"[{\s]", line, maxsplit=1)[0]
        if name_part in name:
            total += float(line.rsplit(None, 1)[-1])
            seen = True
    return total if seen else None


def openai_client(server: MarsServer, api_key: str = "unused", **kwargs):
    """The real `openai` SDK pointed at `server`, never through a proxy; the SDK's defaults
    (retries included) unless `kwargs` say otherwise."""
    import openai

    kwargs.setdefault("timeout", 60)
    return openai.OpenAI(base_url=server.openai_url, api_key=api_key,
                         http_client=openai.DefaultHttpxClient(trust_env=False), **kwargs)


def ollama_client(server: MarsServer, **kwargs):
    """The real `ollama` client pointed at `server`, never through a proxy."""
    import ollama

    kwargs.setdefault("timeout", 60)
    return ollama.Client(host=server.url, trust_env=False, **kwargs)
