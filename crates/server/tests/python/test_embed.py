"""Embeddings through the official clients: `ollama.Client.embed` (Ollama's /api/embed) and the `openai` package's
`embeddings.create` (/v1/embeddings; the package asks for base64 by default) against `hearth serve` of
all-MiniLM-L6-v2 as `hearth convert` writes it. Their vectors are within 1e-4 cosine distance of the independent
numpy reference (tests/fixtures/minilm/reference.json, scripts/reference/minilm_numpy.py), and the cosine
similarities rank the small retrieval set the way the reference does.

Starts its own server (another model than scripts/test-python.sh's) on a free port; needs HEARTH_BIN and the
checkpoint from `scripts/fetch-models.sh all-minilm-l6-v2`, and fails loudly without them."""

import json
import math
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import ollama
import openai

BIN = os.environ["HEARTH_BIN"]
HOME = pathlib.Path(os.environ.get("HEARTH_HOME", pathlib.Path.home() / ".cache" / "hearth"))
CHECKPOINT = HOME / "checkpoints" / "all-minilm-l6-v2"
ROOT = pathlib.Path(__file__).resolve().parents[4]
REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "minilm" / "reference.json").read_text())
MODEL = "all-minilm"


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


class Embeddings(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (CHECKPOINT / "model.safetensors").exists():
            raise RuntimeError(f"{CHECKPOINT} is missing: run scripts/fetch-models.sh all-minilm-l6-v2")
        cls.tmp = tempfile.TemporaryDirectory()
        gguf = pathlib.Path(cls.tmp.name) / f"{MODEL}.gguf"
        subprocess.run([BIN, "convert", str(CHECKPOINT), str(gguf)], check=True, timeout=300)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        cls.log = open(pathlib.Path(cls.tmp.name) / "serve.log", "w+")
        cls.server = subprocess.Popen(
            [BIN, "serve", str(gguf), "--host", "127.0.0.1", "--port", str(port)],
            stdout=cls.log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if cls.server.poll() is not None or time.time() > deadline:
                cls.log.seek(0)
                cls.tearDownClass()
                raise RuntimeError("hearth serve of the embedding model did not come up:\n" + cls.log.read())
            time.sleep(0.2)
        cls.ollama = ollama.Client(host=base, timeout=300)
        cls.openai = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=300)

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()
        cls.log.close()
        cls.tmp.cleanup()

    def check_close(self, texts, vectors):
        want = {s["text"]: s["embedding"] for s in REFERENCE["sentences"]}
        self.assertEqual(len(vectors), len(texts))
        for t, v in zip(texts, vectors):
            self.assertEqual(len(v), 384)
            d = 1 - cosine(v, want[t])
            self.assertLess(d, 1e-4, f"{t!r}: cosine distance {d:e}")

    def test_ollama_embed_matches_reference(self):
        texts = [s["text"] for s in REFERENCE["sentences"]]
        r = self.ollama.embed(model=MODEL, input=texts)
        self.check_close(texts, r.embeddings)
        self.assertEqual(r.prompt_eval_count, sum(len(s["ids"]) for s in REFERENCE["sentences"]))
        self.assertGreater(r.total_duration, 0)
        one = self.ollama.embed(model=MODEL, input=texts[0])
        self.check_close(texts[:1], one.embeddings)

    def test_ollama_embed_ranks_retrieval_set_as_reference(self):
        ret = REFERENCE["retrieval"]
        q = self.ollama.embed(model=MODEL, input=ret["queries"]).embeddings
        d = self.ollama.embed(model=MODEL, input=ret["documents"]).embeddings
        for qi, want in enumerate(ret["ranking"]):
            got = sorted(range(len(d)), key=lambda j: -cosine(q[qi], d[j]))
            self.assertEqual(got, want, ret["queries"][qi])

    def test_ollama_unknown_model_raises(self):
        with self.assertRaises(ollama.ResponseError) as e:
            self.ollama.embed(model="no-such-model", input="x")
        self.assertEqual(e.exception.status_code, 404)

    def test_openai_embeddings_match_reference(self):
        texts = [s["text"] for s in REFERENCE["sentences"][:8]]
        r = self.openai.embeddings.create(model=MODEL, input=texts)  # base64 on the wire
        self.check_close(texts, [d.embedding for d in r.data])
        self.assertEqual([d.index for d in r.data], list(range(len(texts))))
        self.assertEqual(r.usage.prompt_tokens, sum(len(s["ids"]) for s in REFERENCE["sentences"][:8]))
        f = self.openai.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
        self.check_close(texts[:1], [f.data[0].embedding])

    def test_openai_generation_on_an_embedding_model_is_refused(self):
        with self.assertRaises(openai.BadRequestError):
            self.openai.completions.create(model=MODEL, prompt="hello", max_tokens=4)


if __name__ == "__main__":
    unittest.main()
