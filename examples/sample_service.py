"""A sample service for the `make run` demo: answers every GET with the text
given on the command line. Prints "Serving on 127.0.0.1:PORT" once ready."""
import http.server
import sys

TEXT = (sys.argv[1] if len(sys.argv) > 1 else "hello") + "\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"Serving on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
