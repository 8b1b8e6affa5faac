"""A stub OpenAI-compatible chat-completions server on 127.0.0.1 for the judge tests.

It answers from a script of ``(status, content)`` pairs (HTTP 500 once the script is used up), naming
``model`` as the served model in each reply when given, records every request, serves from a daemon thread, and stops when the context manager exits or at
the latest after ``lifetime`` seconds; nothing leaves the loopback interface.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubChatServer:
    """A chat-completions stub: replies from a script of (status, content) and records every request."""

    def __init__(self, script: list[tuple[int, str]], model: str | None = None) -> None:
        self.script = list(script)
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, content = stub.script.pop(0) if stub.script else (500, "script exhausted")
                if status == 200:
                    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
                    payload = json.dumps({**reply, **({"model": model} if model else {})})
                else:
                    payload = json.dumps({"error": {"message": content}})
                data = payload.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"


@contextmanager
def stub_server(
    script: list[tuple[int, str]], lifetime: float = 30.0, model: str | None = None
) -> Iterator[StubChatServer]:
    stub = StubChatServer(script, model)
    thread = threading.Thread(target=stub.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    deadline = threading.Timer(lifetime, stub.server.shutdown)
    deadline.daemon = True
    thread.start()
    deadline.start()
    try:
        yield stub
    finally:
        deadline.cancel()
        stub.server.shutdown()
        stub.server.server_close()
        thread.join(timeout=5)
