"""A `hearth serve` of a test module's own (the shared server of scripts/test-python.sh has no API key and uses the
user's store): SmolLM2 by path, `--api-key`, an empty store in a temporary directory, and a Hub stand-in
(hub.py) on a thread as its HF_ENDPOINT, so pulls stay on this machine. Fails loudly when the server does not come
up; `stop()` ends the server and removes the store."""

import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import hub

BIN = os.environ["HEARTH_BIN"]
MODEL = os.environ.get("HEARTH_MODEL", "smollm2-135m")
KEY = "hearth-test-key"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnServer:
    def __init__(self):
        home = os.environ.get("HEARTH_HOME") or os.path.expanduser("~/.cache/hearth")
        model_file = os.path.join(home, "models", f"{MODEL}.gguf")
        if not os.path.isfile(model_file):
            raise RuntimeError(f"{model_file} is missing: run scripts/fetch-models.sh")
        self.store = tempfile.mkdtemp(prefix="hearth-test-store-")
        self.hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hub.Hub)
        threading.Thread(target=self.hub.serve_forever, daemon=True).start()
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, HEARTH_HOME=self.store, HF_ENDPOINT=f"http://127.0.0.1:{self.hub.server_address[1]}")
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [BIN, "serve", model_file, "--host", "127.0.0.1", "--port", str(port), "--ctx-size", "1024",
             "--parallel", "4", "--api-key", KEY],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                out = self.output()
                self.stop()
                raise RuntimeError(f"hearth serve did not come up:\n{out}")
            time.sleep(0.2)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.hub.shutdown()
        self.hub.server_close()
        shutil.rmtree(self.store, ignore_errors=True)
        self.log.close()
