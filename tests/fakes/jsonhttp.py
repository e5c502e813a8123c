"""The part the fakes share: an HTTP/1.1 request handler that answers JSON and logs to stderr."""
import json
import sys
from http.server import BaseHTTPRequestHandler


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log_prefix = "fake"

    def log_message(self, fmt, *a):
        sys.stderr.write(f"{self.log_prefix}: " + (fmt % a) + "\n")

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
