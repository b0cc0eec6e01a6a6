"""Stand-in for Alertmanager's receivers, run in a container on the stack's egress network
(stdlib only: the baked python image): an SMTP server on 2525 and an HTTP server on 8080 that
answer like a mail relay, Slack's incoming webhooks, WeCom's API (a token from
/cgi-bin/gettoken, then /cgi-bin/message/send) and a plain webhook. Every mail and request is
printed as one JSON line on stdout, which the test reads from the container's logs."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SMTP_PORT = 2525
HTTP_PORT = 8080
MAX_LINES = 10_000  # per SMTP session: a client that never says QUIT cannot hold one forever
IDLE = 30.0  # seconds an SMTP session may stay silent
TOKEN = "sink-token"


def record(entry: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(entry) + "\n")
    sys.stdout.flush()


async def _data(reader: asyncio.StreamReader) -> str:
    """The message after DATA, up to the lone dot, dot-unstuffed (RFC 5321 4.5.2)."""
    lines: list[str] = []
    for _ in range(MAX_LINES):
        line = (await asyncio.wait_for(reader.readline(), IDLE)).decode(errors="replace")
        if line in {".\r\n", ".\n", ""}:
            break
        lines.append(line[1:] if line.startswith("..") else line)
    return "".join(lines)


async def smtp_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    def reply(text: str) -> None:
        writer.write(text.encode() + b"\r\n")

    mail_from = ""
    rcpt: list[str] = []
    reply("220 alert-sink ESMTP")
    try:
        for _ in range(MAX_LINES):
            await writer.drain()
            line = (await asyncio.wait_for(reader.readline(), IDLE)).decode(errors="replace")
            if not line:
                break
            verb, _, arg = line.strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                reply("250-alert-sink\r\n250 8BITMIME")  # no STARTTLS, no AUTH
            elif verb == "MAIL":
                mail_from, rcpt = arg.split(":", 1)[-1].strip(), []
                reply("250 OK")
            elif verb == "RCPT":
                rcpt.append(arg.split(":", 1)[-1].strip())
                reply("250 OK")
            elif verb == "DATA":
                reply("354 end with <CRLF>.<CRLF>")
                await writer.drain()
                data = await _data(reader)
                record({"kind": "smtp", "from": mail_from, "to": rcpt, "data": data})
                reply("250 OK queued")
            elif verb == "QUIT":
                reply("221 bye")
                break
            else:  # HELO, RSET, NOOP, ...
                reply("250 OK")
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        path = urlsplit(self.path).path
        record(
            {
                "kind": "http",
                "method": self.command,
                "path": path,
                "query": urlsplit(self.path).query,
                "content_type": self.headers.get("Content-Type", ""),
                "body": body,
            }
        )
        if path.endswith("/gettoken"):
            answer: dict[str, object] = {"errcode": 0, "errmsg": "ok", "access_token": TOKEN}
        elif path.endswith("/message/send"):
            answer = {"errcode": 0, "errmsg": "ok"}
        else:
            answer = {"ok": True}
        out = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: stdout carries the records only."""


async def main() -> None:
    http = ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Handler)  # noqa: S104 - in its container
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server = await asyncio.start_server(smtp_session, "0.0.0.0", SMTP_PORT)  # noqa: S104
    record({"kind": "ready"})
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
