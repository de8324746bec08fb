"""A stand-in for ketchd in autostart tests: serves /_ping (and [] elsewhere) on the -H unix socket.

``FAKE_KETCHD_MODE=fail`` exits 3 after a message on stderr; ``hang`` never listens.
"""

from __future__ import annotations

import argparse
import os
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    def _answer(self) -> None:
        body = b"OK" if self.path.endswith("/_ping") else b"[]"
        self.send_response(200)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--data-root", "--exec-root", "--pidfile", "-H"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    print("fake ketchd", " ".join(sys.argv[1:]), flush=True)
    mode = os.environ.get("FAKE_KETCHD_MODE", "")
    if mode == "fail":
        print("boom: cannot open the database", file=sys.stderr, flush=True)
        sys.exit(3)
    if mode == "hang":
        time.sleep(60)
        return
    with open(args.pidfile, "w") as fh:
        fh.write(str(os.getpid()))
    server = socketserver.UnixStreamServer(args.H.removeprefix("unix://"), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
