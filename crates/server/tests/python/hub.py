"""A Hugging Face Hub stand-in on 127.0.0.1 for the pull tests (`/api/models/{repo}/tree/{rev}`,
`/{repo}/resolve/{rev}/{file}`), serving one small generated GGUF in `org/Tiny-GGUF` slowly enough that progress is
seen. Started by scripts/test-python.sh (`python hub.py PORT_FILE`); hearth finds it through HF_ENDPOINT."""

import hashlib
import http.server
import json
import struct
import sys
import time

REPO = "org/Tiny-GGUF"
FILE = "tiny-Q8_0.gguf"


def _str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def make_gguf(n_floats=1 << 20):
    """A small llama-shaped GGUF v3 with F32 tensors (the store tests' `make_gguf`, in Python)."""
    kv = [("general.architecture", "llama"), ("general.file_type", 0), ("llama.block_count", 2),
          ("llama.context_length", 256), ("llama.embedding_length", 8), ("llama.attention.head_count", 2),
          ("llama.attention.head_count_kv", 1), ("llama.feed_forward_length", 16),
          ("tokenizer.chat_template", "{{ messages }}")]
    b = b"GGUF" + struct.pack("<IQQ", 3, 2, len(kv) + 1)
    for k, v in kv:
        b += _str(k) + (struct.pack("<I", 8) + _str(v) if isinstance(v, str) else struct.pack("<II", 4, v))
    b += _str("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + b"".join(_str(t) for t in "abc")
    rows = max(n_floats // 8, 1)
    b += _str("token_embd.weight") + struct.pack("<IQQIQ", 2, 8, 3, 0, 0)
    b += _str("blk.0.ffn_up.weight") + struct.pack("<IQQIQ", 2, 8, rows, 0, 96)
    b += b"\0" * (-len(b) % 32)
    return b + bytes(range(256)) * ((24 + rows * 8) * 4 // 256) + b"\0" * ((24 + rows * 8) * 4 % 256)


DATA = make_gguf()
SHA = hashlib.sha256(DATA).hexdigest()


class Hub(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.startswith(f"/api/models/{REPO}/tree/"):
            body = json.dumps([{"type": "file", "oid": "0" * 40, "size": len(DATA), "path": FILE,
                                "lfs": {"oid": SHA, "size": len(DATA), "pointerSize": 134}}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == f"/{REPO}/resolve/main/{FILE}":
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            step = len(DATA) // 16 + 1
            for i in range(0, len(DATA), step):
                self.wfile.write(DATA[i:i + step])
                self.wfile.flush()
                time.sleep(0.05)
        else:
            body = b'{"error":"Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
