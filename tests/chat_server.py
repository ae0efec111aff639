"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, over real HTTP, for the translation tests.

By default it "translates": each paper of the request comes back in English, naming the arXiv id found in its
Chinese text (so a test can check every answer landed on the right paper), in reverse order (ids, not positions,
must be what maps answers to papers). `script` holds behaviours for the next requests, consumed one per request:
("ok",), ("slow", seconds), ("status", code), ("content", text), ("drop", paper_number), ("chinese",).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ID = re.compile(r"\d{4}\.\d{4,5}")


def english(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    found = _ID.search(text)
    return f"{what} of paper {found.group(0) if found else 'unknown'}, in English (+2.1 dB)."


def translate(papers: list[dict]) -> list[dict]:
    out = []
    for p in papers:
        takeaways = [english(t, f"Takeaway {k + 1}") for k, t in enumerate(p["takeaways"])]
        out.append({"id": p["id"], "summary": english(p["summary"], "Summary"), "takeaways": takeaways})
    return out[::-1]


def completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
    ).encode()


class ChatServer:
    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.bodies: list[dict] = []  # every request body, in order
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with outer.lock:
                    outer.bodies.append(body)
                    outer.headers.append(dict(self.headers))
                    action = outer.script.pop(0) if outer.script else ("ok",)
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                status, payload = outer.answer(body, action)
                if status is None:
                    return
                self._send(status, payload)

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout): nobody to answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, body: dict, action: tuple) -> tuple[int | None, bytes]:
        papers = json.loads(body["messages"][-1]["content"])["papers"]
        kind = action[0]
        if kind == "slow":
            time.sleep(action[1])
        if kind == "status":
            return action[1], b'{"error": {"message": "upstream exploded"}}'
        if kind == "content":
            return 200, completion(action[1])
        answer = translate(papers)
        if kind == "drop":
            answer = [a for a in answer if a["id"] != str(action[1])]
        if kind == "chinese":  # the model echoed the Chinese back
            answer = [{"id": p["id"], "summary": p["summary"], "takeaways": p["takeaways"]} for p in papers]
        return 200, completion(json.dumps({"papers": answer}))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    @property
    def batch_sizes(self) -> list[int]:
        return [len(json.loads(b["messages"][-1]["content"])["papers"]) for b in self.bodies]

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
