"""Quick topic-quality sweep: a plain PyTorch loop over NTMModel, for ablations the presets cannot express yet.

Approximates ``train_model`` with the ``default`` preset (Adam, per-step KL warm-up, the
SageMaker early-stopping rule on the validation loss from ``min_ep``, the best-``val/loss``
topics) without Lightning; options NTMModel lacks (no BN on the hidden layers, BN on
log sigma^2, decoder init, a separate dropout on z) are patched onto the module here.
Prints one JSON line per (K, seed) with test-reference NPMI / TU / diversity at the
early-stopped point (``es``) and after each epoch in ``evals`` (no early stop).

``arch=ecr`` is the experiment that led to ``decoder: embedding``; its PPMI vectors and Sinkhorn
loop are kept here as run (with the ``detach`` variant and iteration counts), while training
uses :func:`lightning_module.model.ppmi_word_vectors` and ``sinkhorn_transport_cost``.

Usage:
    python bench/sweep_ntm_quality.py --k 20 50 --seeds 42 1 2 --tag drop0 --set dropout=0.0
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import types
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

from lightning_module.model import NTMModel, ntm_loss_per_doc  # noqa: E402
from ntm_spark.core.topic_metrics import npmi_per_topic, top_words, topic_diversity, topic_uniqueness  # noqa: E402

#: Sweep options and their defaults (the ``default`` preset with ``encoder_layers: auto``).
OPTIONS = {
    "layers": "auto", "alpha": 1.0, "dropout": 0.1, "zdrop": None, "hidden_bn": True, "lv_bn": False,
    "lv_clamp": 0.0, "dec_init": "default", "lr": 0.005, "b1": 0.99, "wd": 0.0, "bs": 256, "wu": 10,
    "epochs": 50, "min_ep": 30, "clip": 0.0, "evals": [30, 50, 75, 100], "save": None, "diag": False,
    "reg": None, "lam": 0.0, "tau": 1.0,
    "arch": "ntm", "ecr_w": 250.0, "beta_temp": 0.2, "emb": "ppmi", "emb_dim": 200, "sk_alpha": 20.0,
    "train_emb": True, "detach": False, "sk_iters": 1000,
}


def ppmi_embeddings(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Word vectors from the training documents alone: SVD of document-level PPMI, shape ``(V, dim)``."""
    b = (x > 0).double()  # (N, V)
    co = b.t() @ b  # (V, V)
    df = co.diag().clamp_min(1.0)
    pmi = torch.log((co * b.shape[0]).clamp_min(1e-12) / (df[:, None] * df[None, :]))
    ppmi = pmi.clamp_min(0.0)
    ppmi.fill_diagonal_(0.0)
    u, sv, _ = torch.linalg.svd(ppmi)
    return (u[:, :dim] * sv[:dim].sqrt()).float()


ITERS: list = []


def sinkhorn_cost(cost: torch.Tensor, alpha: float, iters: int = 1000, tol: float = 5e-3, detach: bool = False) -> torch.Tensor:
    """Entropic OT between uniform topics and uniform words (ECRTM's ECR): ``<plan, cost>``.

    ``detach``: compute the plan without autograd; the gradient is then the plan (envelope theorem).
    """
    if detach:
        with torch.no_grad():
            plan = sinkhorn_cost(cost, alpha, iters, tol, detach=False)
        return (plan * cost).sum()
    k, v = cost.shape
    a = torch.full((k, 1), 1.0 / k)
    b = torch.full((v, 1), 1.0 / v)
    kern = torch.exp(-cost * alpha)  # (K, V)
    u = torch.full((k, 1), 1.0 / k)
    for it in range(iters):
        vv = b / (kern.t() @ u + 1e-16)
        u = a / (kern @ vv + 1e-16)
        if it % 50 == 0:
            err = (vv * (kern.t() @ u) - b).abs().sum()
            if err < tol:
                break
    ITERS.append(it + 1)
    plan = u * kern * vv.t()
    return plan if torch.is_grad_enabled() is False else (plan * cost).sum()


class ECRModel(NTMModel):
    """ECRTM-style decoder (Wu et al. 2023): topic and word embeddings, beta = softmax over topics of
    -||t_k - w_j||^2 / temp, plus the embedding-clustering regularizer (entropic OT, uniform marginals)."""

    def __init__(self, vocab_size: int, k: int, emb: torch.Tensor, temp: float, train_emb: bool, **kw) -> None:
        super().__init__(vocab_size, k, **kw)
        self.word_emb = nn.Parameter(nn.functional.normalize(emb), requires_grad=train_emb)
        t = torch.empty(k, emb.shape[1])
        nn.init.trunc_normal_(t, std=0.1)
        self.topic_emb = nn.Parameter(nn.functional.normalize(t))
        self.temp = temp

    def cost(self) -> torch.Tensor:
        t, w = self.topic_emb, self.word_emb
        return (t.pow(2).sum(1, keepdim=True) + w.pow(2).sum(1)[None, :] - 2 * t @ w.t()).clamp_min(0.0)  # (K, V)

    def beta(self) -> torch.Tensor:
        return torch.softmax(-self.cost() / self.temp, dim=0)  # (K, V)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_bn(z @ self.beta())

    @torch.no_grad()
    def topic_word(self) -> torch.Tensor:
        b = self.beta()
        return b / b.sum(1, keepdim=True)


def diversity_penalty(m: NTMModel, kind: str, tau: float) -> torch.Tensor:
    """A penalty on topics sharing words, differentiable in the decoder weights.

    ``cos``: mean cosine similarity between the topics' word distributions (softmax over the
    vocabulary of the BN-normalised pure-topic logits, as ``topic_word`` reads them).
    ``excl``: mean entropy over words of p(topic | word) = softmax over topics of logits / tau.
    ``wcos``: mean squared cosine between the decoder's topic columns, centred per word.
    """
    w = m.decoder.weight  # (V, K)
    k = w.shape[1]
    bn = m.decoder_bn
    logits = w.t() + m.decoder.bias  # (K, V)
    if isinstance(bn, nn.BatchNorm1d):
        logits = (logits - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
    off = ~torch.eye(k, dtype=torch.bool)
    if kind == "cos":
        beta = torch.softmax(logits, dim=1)  # (K, V)
        beta = beta / beta.norm(dim=1, keepdim=True)
        return (beta @ beta.t())[off].mean()
    if kind == "excl":
        p = torch.softmax(logits / tau, dim=0)  # (K, V): p(topic | word)
        return -(p * torch.log(p + 1e-12)).sum(0).mean()
    if kind == "wcos":
        c = w - w.mean(1, keepdim=True)  # (V, K)
        c = c / c.norm(dim=0, keepdim=True)
        return ((c.t() @ c)[off] ** 2).mean()
    raise ValueError(f"reg={kind!r}: use cos, excl or wcos.")


def load_split(data: Path, split: str, vocab_size: int) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Dense counts ``(N, V)`` and the documents as index arrays."""
    t = pq.read_table(data / split, columns=["indices", "values"])
    idx, val = t["indices"].to_pylist(), t["values"].to_pylist()
    x = torch.zeros(len(idx), vocab_size)
    for i, (a, b) in enumerate(zip(idx, val)):
        x[i, a] = torch.tensor(b)
    return x, [np.asarray(a) for a in idx]


def score(topic_word: np.ndarray, ref: list[np.ndarray]) -> dict:
    """NPMI (top 10, test reference), TU (top 10) and diversity (top 25)."""
    t10 = top_words(topic_word, 10)
    return {"npmi": round(float(npmi_per_topic(t10, ref).mean()), 4), "tu": round(topic_uniqueness(t10), 3),
            "div": round(topic_diversity(topic_word, 25), 3)}


def build_model(vocab_size: int, k: int, o: dict, emb: torch.Tensor = None) -> NTMModel:
    """The ``default`` preset's model with the sweep's changes patched on."""
    kw = dict(encoder_layers=o["layers"], encoder_layers_activation="softplus", batch_norm=True,
              encoder_input="log1p", prior="dirichlet", dirichlet_alpha=o["alpha"], decoder_batch_norm=True,
              dropout=o["dropout"])
    if o["arch"] == "ecr":
        m = ECRModel(vocab_size, k, emb, o["beta_temp"], o["train_emb"], **kw)
    else:
        m = NTMModel(vocab_size, k, **kw)
    if not o["hidden_bn"]:  # ProdLDA: BN on mu only
        m.encoder = nn.Sequential(*[b for b in m.encoder if not isinstance(b, nn.BatchNorm1d)])
    m.topic_dropout = nn.Dropout(o["dropout"] if o["zdrop"] is None else o["zdrop"])
    if o["lv_bn"]:  # ProdLDA: BN (no affine) on log sigma^2; the clamp keeps exp() finite
        m.lv_bn = nn.BatchNorm1d(k, affine=False)

        def encode(self: NTMModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pi = self.encoder_dropout(self.encoder(torch.log1p(x)))  # (B, H)
            logvar = self.lv_bn(self.log_sigma(pi))  # (B, K)
            if o["lv_clamp"]:
                logvar = logvar.clamp(-o["lv_clamp"], o["lv_clamp"])
            return self.mu_bn(self.mu(pi)), logvar

        m.encode = types.MethodType(encode, m)
    if o["dec_init"] == "uniform":  # the ProdLDA PyTorch port's init
        nn.init.uniform_(m.decoder.weight, 0, 1.0)
    return m


def run(k: int, seed: int, o: dict, xtr: torch.Tensor, xva: torch.Tensor, xte: torch.Tensor, ref: list) -> dict:
    """Train one model; return the scores at the early-stopped point and at ``evals``."""
    torch.manual_seed(seed)
    emb = None
    if o["arch"] == "ecr":
        emb = ppmi_embeddings(xtr, o["emb_dim"]) if o["emb"] == "ppmi" else torch.nn.init.trunc_normal_(torch.empty(xtr.shape[1], o["emb_dim"]))
    m = build_model(xtr.shape[1], k, o, emb)
    opt = torch.optim.Adam(m.parameters(), lr=o["lr"], betas=(o["b1"], 0.999), weight_decay=o["wd"])
    n, bs = xtr.shape[0], o["bs"]
    per_epoch, step = math.ceil(n / bs), 0
    gen = torch.Generator().manual_seed(seed)
    best, wait, stopped = None, 0, None  # the SageMaker rule, from min_ep
    best_val, best_tw = float("inf"), None  # the best-val/loss checkpoint, over all epochs
    out: dict = {}
    prior = (m.prior_mu, m.prior_var)
    for ep in range(1, o["epochs"] + 1):
        m.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            x = xtr[perm[i:i + bs]]  # (B, V)
            if x.shape[0] < 2:
                continue
            log_y, mu, lv = m(x, sample=True)
            recon, kl = ntm_loss_per_doc(x, log_y, mu, lv, *prior)
            kl_w = min(1.0, (step + 1) / (o["wu"] * per_epoch)) if o["wu"] else 1.0
            opt.zero_grad()
            loss = (recon + kl_w * kl).mean()
            if o["reg"] and o["lam"]:
                loss = loss + o["lam"] * diversity_penalty(m, o["reg"], o["tau"])
            if o["arch"] == "ecr" and o["ecr_w"]:
                loss = loss + o["ecr_w"] * sinkhorn_cost(m.cost(), o["sk_alpha"], o["sk_iters"], detach=o["detach"])
            loss.backward()
            if o["clip"]:
                nn.utils.clip_grad_value_(m.parameters(), o["clip"])
            opt.step()
            step += 1
        m.eval()
        with torch.no_grad():
            log_y, mu, lv = m(xva, sample=False)
            recon, kl = ntm_loss_per_doc(xva, log_y, mu, lv, *prior)
            val = float((recon + kl).mean())
        if not math.isfinite(val):
            out["diverged"] = ep
            break
        if stopped is None:
            if ep >= o["min_ep"]:
                if best is None or val < best - 0.001 * abs(best):
                    best, wait = val, 0
                else:
                    wait += 1
                stopped = ep if wait >= 3 else None
            if val <= best_val:
                best_val, best_tw = val, m.topic_word().numpy()
            if stopped == ep or ep == o["epochs"]:
                out["es"] = {"ep": ep, **score(best_tw, ref)}
        if ep in o["evals"]:
            out[f"e{ep}"] = score(m.topic_word().numpy(), ref)
    if ITERS:
        out["sinkhorn_iters_median"] = float(np.median(ITERS))
        out["sinkhorn_iters_p90_p99_max"] = [float(np.percentile(ITERS, q)) for q in (90, 99, 100)]
        ITERS.clear()
    if o["save"]:
        torch.save(m.state_dict(), f"/tmp/ntm_sweep_{o['save']}_{k}_{seed}.pt")
    if o["diag"]:  # are repeated top words dead topics or shared words?
        with torch.no_grad():
            usage = m.infer_topics(xte).mean(0).numpy()  # (K,)
        t25 = top_words(m.topic_word().numpy(), 25)
        counts = Counter(t25.ravel().tolist())
        out["topics_below_0.2/K"] = int((usage < 0.2 / k).sum())
        out["usage_max"] = float(usage.max())
        out["most_repeated"] = counts.most_common(10)
        out["unique_per_topic"] = sorted(int(sum(counts[w] == 1 for w in row)) for row in t25)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / ".ntm/data/20newsgroups"))
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--tag", default="")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help=f"KEY=VALUE, keys: {', '.join(OPTIONS)}")
    args = parser.parse_args(argv)
    o = dict(OPTIONS)
    for item in args.overrides:
        key, value = item.split("=", 1)
        if key not in OPTIONS:
            raise ValueError(f"--set {item!r}: unknown key {key!r}; use one of {list(OPTIONS)}.")
        o[key] = yaml.safe_load(value)
    torch.set_num_threads(1)  # two sweeps at a time on the 2-core machine
    data = Path(args.data)
    vocab_size = len((data / "vocab.txt").read_text().splitlines())
    xtr, _ = load_split(data, "train", vocab_size)
    xva, _ = load_split(data, "validation", vocab_size)
    xte, ref = load_split(data, "test", vocab_size)
    for k in args.k:
        for seed in args.seeds:
            t0 = time.time()
            r = run(k, seed, o, xtr, xva, xte, ref)
            print(json.dumps({"tag": args.tag, "k": k, "seed": seed, "s": round(time.time() - t0), **r}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
