"""A loopback stand-in for an OpenAI-compatible server (vLLM's completions API) around a local `transformers` model.

Exactly the subset `noseprint query` uses: `GET /v1/models` and `POST /v1/completions` with token-id prompts,
`echo`, `logprobs`, `max_tokens` 1, temperature 0 and `return_tokens_as_token_ids`, answered as vLLM does:
`top_logprobs` holds one entry per echoed prompt token (the first null) and one for the generated token, each the
top-k of the distribution that predicted it plus that token itself. `mode` makes it misbehave for the tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

MODEL_NAME = "served-model"


def completion(model, body: dict) -> dict:
    """vLLM's answer to a completions request with echo and logprobs (one prompt of ids, one greedy token)."""
    prompt, k = list(body["prompt"]), int(body["logprobs"])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), dim=-1)
    generated = int(logprobs[-1].argmax())
    tokens = [*prompt, generated]
    top: list[dict | None] = [None]
    for position in range(len(prompt)):
        values, ids = logprobs[position].topk(k)
        entry = {f"token_id:{int(i)}": float(v) for i, v in zip(ids, values, strict=True)}
        actual = tokens[position + 1]
        entry[f"token_id:{actual}"] = float(logprobs[position, actual])
        top.append(entry)
    spelt = [f"token_id:{t}" for t in tokens]
    return {
        "id": "cmpl-test",
        "object": "text_completion",
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "text": spelt[-1],
                "logprobs": {"tokens": spelt, "token_logprobs": [None] * len(spelt), "top_logprobs": top},
                "finish_reason": "length",
            }
        ],
    }


class Handler(BaseHTTPRequestHandler):
    model = None
    mode = "ok"

    def log_message(self, *args) -> None:  # quiet: the test output is pytest's
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's spelling)
        if self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": MODEL_NAME}]}).encode())
        else:
            self._send(404, b'{"detail": "not found"}')

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/completions" or body.get("model") != MODEL_NAME:
            return self._send(404, json.dumps({"error": f"no model {body.get('model')!r}"}).encode())
        if self.mode == "error":
            return self._send(500, b'{"error": "the GPU caught fire"}')
        if self.mode == "garbage":
            return self._send(200, b"<html>hello</html>", "text/html")
        answer = completion(self.model, body)
        if self.mode == "no-logprobs":
            answer["choices"][0]["logprobs"] = None
        if self.mode == "bos":  # a server that adds a BOS token in front of the ids
            logprobs = answer["choices"][0]["logprobs"]
            logprobs["tokens"].insert(0, "token_id:1")
            logprobs["top_logprobs"].insert(1, {"token_id:1": -0.5})
        self._send(200, json.dumps(answer).encode())


@contextmanager
def serving(folder: Path, mode: str = "ok") -> Iterator[str]:
    """Serve the model in `folder` on a free loopback port; yields the base URL."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    handler = type("BoundHandler", (Handler,), {"model": model, "mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
