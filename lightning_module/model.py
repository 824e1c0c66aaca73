"""The neural topic model as a plain ``nn.Module`` and its pure loss function.

The seed formula (SageMaker NTM, after Miao et al.'s NVDM):

* encoder MLP ``pi = f_X(x)``;
* ``mu = l1(pi)``, ``log sigma = l2(pi)``;
* ``h = mu + sigma * eps`` with ``eps ~ N(0, I)``;
* ``z = g(h)``, ``g`` configurable, softmax by default;
* decoder ``y = softmax(W z + b)``;
* loss ``= -sum(x * log y) + KL(N(mu, sigma^2) || prior)``.

Options known to improve coherence (ProdLDA, Srivastava & Sutton 2017): a Laplace
approximation of a Dirichlet prior instead of ``N(0, I)``, batch norm on the
encoder's ``mu``/``log sigma`` and on the decoder logits, dropout, and KL warm-up
(the warm-up lives in the Lightning system; the loss takes a ``kl_weight``).

Options for topic diversity (ECRTM, Wu et al. 2023, "Effective Neural Topic Modeling with
Embedding Clustering Regularization"): ``decoder="embedding"`` builds ``W`` from word and
topic vectors, ``beta = softmax over topics of -||t_k - e_w||^2 / beta_temperature``, and
:meth:`NTMModel.clustering_cost` is the embedding-clustering regularizer (entropic optimal
transport of uniform word mass onto uniform topic mass), which keeps topics from sharing
words. The word vectors are fixed; :func:`ppmi_word_vectors` derives them from the training
documents alone (an SVD of the document-level PPMI matrix), or they come from a file.

The hyperparameters are declared once, in :mod:`ntm_spark.core.hparams`: :class:`NTMModel`
takes exactly its ``model`` fields, each defaulting to the ``sagemaker`` preset (the seed), and
:data:`PRESETS` (re-exported here) bundles them: ``sagemaker`` reproduces the seed exactly and
``default`` is the one chosen by measured topic quality (see BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ntm_spark.core.hparams import (
    MODEL,
    PRESETS,  # noqa: F401  (re-exported: bench/ and older code import it from here)
    Activation,
    Decoder,
    EncoderInput,
    Prior,
    TopicActivation,
    hparam_names,
    plain_value,
    take_hparams,
)

#: The model's hyperparameters that a linear-decoder model leaves out of :attr:`NTMModel.config`,
#: so that its ``hparams.json`` reads as before the embedding decoder existed.
EMBEDDING_DECODER_FIELDS = ("decoder", "embedding_dim", "beta_temperature")

ACTIVATIONS = get_args(Activation)
ENCODER_INPUTS = get_args(EncoderInput)
TOPIC_ACTIVATIONS = get_args(TopicActivation)
PRIORS = get_args(Prior)
DECODERS = get_args(Decoder)
#: Entropic-OT settings of the clustering regularizer (ECRTM's): inverse regularization
#: strength, the iteration cap, and the marginal error at which the iterations stop.
SINKHORN_ALPHA, SINKHORN_MAX_ITER, SINKHORN_TOL = 20.0, 1000, 5e-3

class NTMLoss(NamedTuple):
    """Batch-mean loss terms; ``loss = recon + kl_weight * kl``."""

    loss: Tensor
    recon: Tensor
    kl: Tensor


def resolve_encoder_layers(encoder_layers: Union[str, Sequence[int]], num_topics: int) -> list[int]:
    """Return the encoder's hidden widths: ``"auto"`` means ``[3K, 2K]`` as in SageMaker NTM.

    Raises:
        ValueError: for a string other than ``"auto"``, an empty list or a width < 1.
    """
    if isinstance(encoder_layers, str):
        if encoder_layers != "auto":
            raise ValueError(f"encoder_layers={encoder_layers!r}: use 'auto' or a list of widths such as [100, 50].")
        return [3 * num_topics, 2 * num_topics]
    layers = [int(w) for w in encoder_layers]
    if not layers or any(w < 1 for w in layers):
        raise ValueError(f"encoder_layers={list(encoder_layers)!r}: give at least one width, each >= 1, or 'auto'.")
    return layers


def background_log_frequencies(word_counts: Tensor, smoothing: float = 0.5) -> Tensor:
    """Return ``log p(w)`` from the training split's word counts ``(V,)``, add-``smoothing`` so unseen words stay finite."""
    counts = word_counts.double().clamp_min(0.0) + smoothing
    return (counts / counts.sum()).log().float()


def ppmi_word_vectors(cooccurrence: Tensor, n_docs: int, dim: int) -> Tensor:
    """Word vectors from document co-occurrence counts: a truncated SVD of the PPMI matrix.

    Args:
        cooccurrence: Documents containing both words, shape ``(V, V)``; the diagonal is each
            word's document frequency.
        n_docs: How many documents were counted.
        dim: Vector size (at most V).

    Returns:
        Float32 vectors ``U_d * sqrt(S_d)``, shape ``(V, dim)``, unit length per row (a word
        whose vector is zero, one that never co-occurs, gets a unit vector along its own index).
    """
    co = cooccurrence.double()
    v = co.shape[0]
    df = co.diagonal().clamp_min(1.0)
    pmi = torch.log((co * float(n_docs)).clamp_min(1e-12) / (df[:, None] * df[None, :]))  # (V, V)
    ppmi = pmi.clamp_min(0.0)
    ppmi.fill_diagonal_(0.0)
    # PPMI is symmetric: its singular vectors are eigenvectors, singular values |eigenvalues|.
    evals, evecs = torch.linalg.eigh(ppmi)
    order = evals.abs().argsort(descending=True)[: min(dim, v)]
    vec = evecs[:, order] * evals[order].abs().sqrt()  # (V, d)
    if vec.shape[1] < dim:
        vec = F.pad(vec, (0, dim - vec.shape[1]))
    norm = vec.norm(dim=1, keepdim=True)
    dead = norm.squeeze(1) < 1e-12
    vec[dead] = F.one_hot(torch.nonzero(dead).squeeze(1) % dim, dim).double()
    return F.normalize(vec, dim=1).float()


def sinkhorn_transport_cost(
    cost: Tensor,
    alpha: float = SINKHORN_ALPHA,
    max_iter: int = SINKHORN_MAX_ITER,
    tol: float = SINKHORN_TOL,
    background_cost: Optional[Tensor] = None,
    background_mass: float = 0.0,
) -> Tensor:
    """Entropic optimal-transport cost ``<P, C>`` between uniform rows and uniform columns.

    Sinkhorn iterations on ``exp(-alpha * C)``, differentiated through (as ECRTM does); the
    marginal error is checked after 50 iterations and every 50 after that (one host sync per
    training step on a GPU: on 20 Newsgroups 99% of steps stop at the first check).

    Args:
        cost: Cost matrix, shape ``(K, V)``, float32.
        alpha: Inverse entropic regularization.
        max_iter: Iteration cap.
        tol: Stop when the column marginals are off by less than this (L1).
        background_cost: With ``background_mass`` > 0, the cost of sending each column to one
            extra row, shape ``(V,)``: that row takes ``background_mass`` of the columns' mass and
            the ``K`` rows share the rest equally (partial transport); its share of the plan is
            left out of the returned cost.
        background_mass: The extra row's share, in ``[0, 1)``; 0 is the balanced transport.

    Returns:
        A scalar tensor.
    """
    k, v = cost.shape
    a = torch.full((k, 1), (1.0 - background_mass) / k, dtype=cost.dtype, device=cost.device)
    rows = cost  # (K [+ 1], V)
    if background_mass > 0.0:
        if background_cost is None or tuple(background_cost.shape) != (v,):
            raise ValueError(f"background_mass={background_mass!r} needs a background_cost of shape ({v},).")
        rows = torch.cat([cost, background_cost.to(cost.dtype)[None, :]], dim=0)
        a = torch.cat([a, torch.full((1, 1), background_mass, dtype=cost.dtype, device=cost.device)])
    b = torch.full((v, 1), 1.0 / v, dtype=cost.dtype, device=cost.device)
    kern = torch.exp(-rows * alpha)  # (K [+ 1], V)
    u = a.clone()
    for it in range(max_iter):
        w = b / (kern.t() @ u + 1e-16)  # (V, 1)
        u = a / (kern @ w + 1e-16)  # (K, 1)
        if it and it % 50 == 0 and float((w * (kern.t() @ u) - b).abs().sum().detach()) < tol:
            break
    plan = u * kern * w.t()  # (K [+ 1], V)
    return (plan[:k] * cost).sum()


def _activation(name: str) -> nn.Module:
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}[name]()


def laplace_dirichlet_prior(alpha: Tensor) -> tuple[Tensor, Tensor]:
    """Return the mean and variance of the Laplace approximation of ``Dirichlet(alpha)`` in softmax basis.

    Args:
        alpha: Concentration per topic, shape ``(K,)``.

    Returns:
        ``(mu0, var0)``, each shape ``(K,)``.
    """
    k = alpha.numel()
    log_alpha = alpha.log()
    mu0 = log_alpha - log_alpha.mean()
    var0 = (1.0 / alpha) * (1.0 - 2.0 / k) + (1.0 / alpha).sum() / k**2
    return mu0, var0


def ntm_loss_per_doc(
    x: Tensor,
    log_y: Tensor,
    mu: Tensor,
    logvar: Tensor,
    prior_mu: Optional[Tensor] = None,
    prior_var: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """Per-document ``(recon, kl)``, each shape ``(B,)``; arguments as in :func:`ntm_loss`."""
    recon = -(x * log_y).sum(dim=1)  # (B,)
    var = logvar.exp()  # (B, K)
    if prior_mu is None:
        kl = 0.5 * (var + mu.pow(2) - 1.0 - logvar).sum(dim=1)  # (B,)
    else:
        kl = 0.5 * (var / prior_var + (mu - prior_mu).pow(2) / prior_var - 1.0 + prior_var.log() - logvar).sum(dim=1)
    return recon, kl


def ntm_loss(
    x: Tensor,
    log_y: Tensor,
    mu: Tensor,
    logvar: Tensor,
    prior_mu: Optional[Tensor] = None,
    prior_var: Optional[Tensor] = None,
    kl_weight: float = 1.0,
    weight: Optional[Tensor] = None,
) -> NTMLoss:
    """Compute the negative ELBO, with its reconstruction and KL terms kept apart.

    Args:
        x: Word counts, shape ``(B, V)``.
        log_y: Log word probabilities from the decoder, shape ``(B, V)``.
        mu: Posterior mean, shape ``(B, K)``.
        logvar: Posterior log variance ``2 log sigma``, shape ``(B, K)``.
        prior_mu: Prior mean, shape ``(K,)``; ``None`` means 0 (standard normal prior).
        prior_var: Prior variance, shape ``(K,)``; ``None`` means 1.
        kl_weight: Multiplies the KL term in ``loss`` (KL warm-up); ``recon``/``kl`` are unweighted.
        weight: Per-document weights, shape ``(B,)`` (0 for padding rows); ``None`` means all 1.

    Returns:
        :class:`NTMLoss` of weighted means over the batch of per-document sums.
    """
    recon, kl = ntm_loss_per_doc(x, log_y, mu, logvar, prior_mu, prior_var)  # (B,), (B,)
    if weight is None:
        recon_m, kl_m = recon.mean(), kl.mean()
    else:
        denom = weight.sum().clamp_min(1e-12)
        recon_m, kl_m = (recon * weight).sum() / denom, (kl * weight).sum() / denom
    return NTMLoss(recon_m + kl_weight * kl_m, recon_m, kl_m)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics skip padding rows.

    The loaders pad a batch with empty documents of weight 0 (so that DDP ranks take the same
    number of steps); with plain batch norm those rows would shift every real document's
    normalization. Called with ``mask`` (``(B,)``, nonzero for real rows) in training mode, the
    batch mean and variance, and the running statistics, come from the real rows only; a batch
    with fewer than 2 real rows leaves the running statistics alone. Without a mask, or in eval
    mode, it is ``nn.BatchNorm1d`` (same parameters and state-dict keys). Lightning's
    ``sync_batchnorm`` (multi-GPU) converts it to ``SyncBatchNorm``, which counts padding rows.
    """

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:  # noqa: D102
        if mask is None or not self.training:
            return super().forward(x)
        w = (mask != 0).to(x.dtype)[:, None]  # (B, 1)
        n = w.sum()
        mean = (x * w).sum(dim=0) / n.clamp_min(1.0)  # (C,)
        var = ((x - mean).pow(2) * w).sum(dim=0) / n.clamp_min(1.0)  # (C,), biased, as BatchNorm normalizes
        # No real rows: normalize by nothing (mean 0, variance 1) rather than by the padding.
        mean = torch.where(n > 0, mean, torch.zeros_like(mean))
        var = torch.where(n > 0, var, torch.ones_like(var))
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1.0).clamp_min(1.0)
                keep = n >= 2  # no sync with the host: torch.where, not an if
                self.running_mean.copy_(torch.where(keep, (1 - m) * self.running_mean + m * mean.detach(), self.running_mean))
                self.running_var.copy_(torch.where(keep, (1 - m) * self.running_var + m * unbiased.detach(), self.running_var))
                self.num_batches_tracked.add_(1)
        y = (x - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y


def _masked(layer: nn.Module, x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Call ``layer``, passing ``mask`` on to :class:`MaskedBatchNorm1d` only."""
    return layer(x, mask) if isinstance(layer, MaskedBatchNorm1d) else layer(x)


class NTMModel(nn.Module):
    """Variational neural topic model (SageMaker NTM / NVDM / ProdLDA family).

    Its hyperparameters are the ``model`` fields of :class:`ntm_spark.core.hparams.Hyperparameters`,
    which documents each one and its choices; one left out takes the ``sagemaker`` preset's value
    (the seed architecture).

    Args:
        vocab_size: Vocabulary size V (SageMaker's ``feature_dim``).
        num_topics: Number of topics K, 2-1000.
        word_vectors: The embedding decoder's fixed word vectors, shape ``(V, embedding_dim)`` (e.g.
            :func:`ppmi_word_vectors`); ``None`` starts from random unit vectors, which a
            saved ``state_dict`` then overwrites.
        background: The linear decoder's initial bias ``b``, shape ``(V,)``: the training split's log
            word frequencies (:func:`background_log_frequencies`); ``None`` keeps PyTorch's init.
        **hparams: The other ``model`` hyperparameters by name (``encoder_layers``, ``batch_norm``,
            ``prior``, ``dropout``, ``decoder``...; the embedding decoder's ``W`` is :meth:`beta`).

    Raises:
        TypeError: for a keyword that is not a ``model`` hyperparameter.
        ValueError: for a value out of range, naming the argument and the fix.
    """

    def __init__(
        self,
        vocab_size: int,
        num_topics: int,
        *,
        word_vectors: Optional[Tensor] = None,
        background: Optional[Tensor] = None,
        **hparams: Any,
    ) -> None:
        super().__init__()
        h = take_hparams({"num_topics": num_topics, **hparams}, (MODEL,), "NTMModel")
        check_model_args(vocab_size, num_topics, h["encoder_layers_activation"], h["topic_activation"], h["prior"], h["dirichlet_alpha"], h["dropout"])
        if h["encoder_input"] not in ENCODER_INPUTS:
            raise ValueError(f"encoder_input={h['encoder_input']!r}: choose one of {list(ENCODER_INPUTS)}.")
        check_decoder_args(h["decoder"], h["embedding_dim"], h["beta_temperature"])
        layers = resolve_encoder_layers(h["encoder_layers"], num_topics)
        h = {name: plain_value(name, value) for name, value in h.items()}
        h["encoder_layers"] = layers
        self.config: dict[str, Any] = {"vocab_size": int(vocab_size), **h}
        if h["decoder"] != "embedding":  # older model folders read the same
            for name in EMBEDDING_DECODER_FIELDS:
                del self.config[name]
        decoder, embedding_dim, dropout = h["decoder"], h["embedding_dim"], h["dropout"]
        self.decoder_kind = decoder
        self.beta_temperature = h["beta_temperature"]
        self.vocab_size = int(vocab_size)
        self.num_topics = h["num_topics"]
        self.topic_activation = h["topic_activation"]
        self.encoder_input = h["encoder_input"]

        blocks: list[nn.Module] = []
        width = vocab_size
        for hidden in layers:
            blocks.append(nn.Linear(width, hidden))
            if h["batch_norm"]:
                blocks.append(MaskedBatchNorm1d(hidden))
            blocks.append(_activation(h["encoder_layers_activation"]))
            width = hidden
        self.encoder = nn.Sequential(*blocks)
        self.encoder_dropout = nn.Dropout(dropout)
        self.mu = nn.Linear(width, num_topics)  # l1
        self.log_sigma = nn.Linear(width, num_topics)  # l2
        # BN on mu (ProdLDA) keeps the posterior from collapsing early.
        self.mu_bn = MaskedBatchNorm1d(num_topics, affine=False) if h["batch_norm"] else nn.Identity()
        self.topic_dropout = nn.Dropout(dropout)
        if decoder == "linear":
            self.decoder = nn.Linear(num_topics, vocab_size)  # W, b
            if background is not None:
                if tuple(background.shape) != (vocab_size,):
                    raise ValueError(
                        f"background has shape {tuple(background.shape)}: give one log frequency per vocabulary word, ({vocab_size},)."
                    )
                # b starts as the corpus's log word frequencies (SAGE / Scholar's background term), so W
                # learns what each topic adds to them instead of every topic re-learning the common words.
                with torch.no_grad():
                    self.decoder.bias.copy_(background.float())
        else:
            if word_vectors is None:
                word_vectors = F.normalize(torch.randn(vocab_size, embedding_dim), dim=1)
            if tuple(word_vectors.shape) != (vocab_size, embedding_dim):
                raise ValueError(
                    f"word_vectors has shape {tuple(word_vectors.shape)}: the embedding decoder needs one row per "
                    f"vocabulary word and embedding_dim columns, ({vocab_size}, {embedding_dim})."
                )
            self.register_buffer("word_embeddings", word_vectors.detach().float().clone())  # (V, D), fixed
            topics = nn.init.trunc_normal_(torch.empty(num_topics, embedding_dim), std=0.1)
            self.topic_embeddings = nn.Parameter(F.normalize(topics, dim=1))  # (K, D)
        self.decoder_bn = MaskedBatchNorm1d(vocab_size, affine=False) if h["decoder_batch_norm"] else nn.Identity()

        # Prior as buffers: they follow the module to its device and into the state_dict.
        if h["prior"] == "dirichlet":
            mu0, var0 = laplace_dirichlet_prior(torch.full((num_topics,), h["dirichlet_alpha"]))
        else:
            mu0, var0 = torch.zeros(num_topics), torch.ones(num_topics)
        self.register_buffer("prior_mu", mu0)
        self.register_buffer("prior_var", var0)
        self.use_prior_buffers = h["prior"] != "normal"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "NTMModel":
        """Rebuild a model from :attr:`config` (``hparams.json`` of a model folder)."""
        return cls(**config)

    @classmethod
    def from_hparams(
        cls, hparams: Mapping[str, Any], vocab_size: int, word_vectors: Optional[Tensor] = None, background: Optional[Tensor] = None
    ) -> "NTMModel":
        """Build a model from resolved hyperparameters, taking the ``model`` fields and ignoring the rest.

        Args:
            hparams: Hyperparameter names to values, e.g. :func:`ntm_spark.core.hparams.resolve_hparams`.
            vocab_size: Vocabulary size V (from ``vocab.txt``).
            word_vectors: See the class arguments.
            background: See the class arguments.
        """
        return cls(
            vocab_size,
            word_vectors=word_vectors,
            background=background,
            **{name: hparams[name] for name in hparam_names(MODEL) if name in hparams},
        )

    def encode(self, x: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Return ``(mu, logvar)`` for word counts ``x`` of shape ``(B, V)``; each is ``(B, K)``.

        ``mask`` (``(B,)``, 0 for padding rows) keeps padding out of the batch-norm statistics.
        """
        pi = torch.log1p(x) if self.encoder_input == "log1p" else x  # (B, V)
        for layer in self.encoder:
            pi = _masked(layer, pi, mask)  # (B, H)
        pi = self.encoder_dropout(pi)
        mu = _masked(self.mu_bn, self.mu(pi), mask)  # (B, K)
        logvar = 2.0 * self.log_sigma(pi)  # (B, K), log sigma^2
        return mu, logvar

    def topic_map(self, h: Tensor) -> Tensor:
        """Apply ``g`` to the latent ``h`` of shape ``(B, K)``."""
        if self.topic_activation == "softmax":
            return F.softmax(h, dim=1)
        if self.topic_activation == "sigmoid":
            return torch.sigmoid(h)
        if self.topic_activation == "tanh":
            return torch.tanh(h)
        return h

    def embedding_cost(self) -> Tensor:
        """Squared distances between topic and word vectors, shape ``(K, V)`` (embedding decoder)."""
        t, e = self.topic_embeddings, self.word_embeddings  # (K, D), (V, D)
        return (t.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)[None, :] - 2.0 * t @ e.t()).clamp_min(0.0)

    def beta(self) -> Tensor:
        """Return the embedding decoder's ``W`` as ``(K, V)``: ``softmax`` over topics of ``-cost / temperature``."""
        return F.softmax(-self.embedding_cost() / self.beta_temperature, dim=0)

    def clustering_cost(self, background_mass: float = 0.0) -> Tensor:
        """ECRTM's embedding-clustering regularizer, float32; 0 for the linear decoder.

        ``background_mass`` (``ecr_background_mass``): that share of the vocabulary goes to a
        background point, the mean word vector, instead of the topics. ECRTM's balanced transport
        (0) makes every topic take ``V / K`` words, so at K = 50 the topics beyond the corpus's
        clusters took generic words ("probably likely doubt strong"); the background takes those.
        """
        if self.decoder_kind == "linear":
            return torch.zeros((), device=self.prior_mu.device)
        with torch.autocast(device_type=self.prior_mu.device.type, enabled=False):
            background = None
            if background_mass > 0.0:
                e = self.word_embeddings.float()
                background = (e - e.mean(dim=0, keepdim=True)).pow(2).sum(dim=1)  # (V,)
            return sinkhorn_transport_cost(self.embedding_cost().float(), background_cost=background, background_mass=background_mass)

    def topic_similarity(self) -> Tensor:
        """Mean squared cosine similarity between the topics' raised words; 0 for the embedding decoder.

        A linear decoder's topic ``k`` raises word ``w`` above the background ``b`` where ``W[w, k] > 0``
        (its top words are the largest of these); the similarity of topics ``j`` and ``k`` is the cosine
        of ``relu(W[:, j])`` and ``relu(W[:, k])``, and this is its square's mean over the ``K (K - 1)``
        ordered pairs. It is the penalty of ``topic_similarity_weight``: at K=50 the ``sagemaker``
        preset's topics beyond the corpus's clusters raised the same words (issue 18). 0 when no two
        topics raise a word in common, 1 when all raise the same words in the same proportions.
        """
        if self.decoder_kind != "linear":
            return torch.zeros((), device=self.prior_mu.device)
        w = F.normalize(F.relu(self.decoder.weight), dim=0)  # (V, K), unit columns (a column with no raised word stays 0)
        cos = w.t() @ w  # (K, K)
        k = cos.shape[0]
        off = cos - torch.eye(k, dtype=cos.dtype, device=cos.device)
        return off.pow(2).sum() / (k * (k - 1))

    def decode_logits(self, z: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Return the decoder logits ``(B, V)`` for topic vectors ``z`` of shape ``(B, K)``."""
        if self.decoder_kind == "embedding":
            return _masked(self.decoder_bn, z @ self.beta().to(z.dtype), mask)
        return _masked(self.decoder_bn, self.decoder(z), mask)

    def forward(self, x: Tensor, sample: bool = True, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encode, sample and decode.

        Args:
            x: Word counts, shape ``(B, V)``.
            sample: Draw ``h = mu + sigma * eps``; ``False`` uses ``h = mu``.
            mask: ``(B,)``, 0 for padding rows: they are left out of batch-norm statistics.

        Returns:
            ``(log_y, mu, logvar)``: log word probabilities ``(B, V)`` and the posterior ``(B, K)`` x2.
        """
        mu, logvar = self.encode(x, mask)
        h = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu  # (B, K)
        z = self.topic_dropout(self.topic_map(h))  # (B, K)
        log_y = F.log_softmax(self.decode_logits(z, mask), dim=1)  # (B, V)
        return log_y, mu, logvar

    def loss(self, x: Tensor, sample: bool = True, kl_weight: float = 1.0, weight: Optional[Tensor] = None) -> NTMLoss:
        """Run :meth:`forward` and :func:`ntm_loss` with this model's prior."""
        log_y, mu, logvar = self(x, sample=sample, mask=weight)
        prior_mu, prior_var = (self.prior_mu, self.prior_var) if self.use_prior_buffers else (None, None)
        return ntm_loss(x, log_y, mu, logvar, prior_mu, prior_var, kl_weight=kl_weight, weight=weight)

    @torch.no_grad()
    def infer_topics(self, x_dense: Tensor) -> Tensor:
        """Deterministic document-topic weights: ``softmax(mu)``, no sampling, no dropout.

        Uses the current mode's batch-norm statistics; call ``eval()`` first (as
        :func:`~lightning_module.model_folder.load_model_folder` does).

        Args:
            x_dense: Word counts, shape ``(B, V)``.

        Returns:
            Topic weights, shape ``(B, K)``; each row sums to 1.
        """
        mu, _ = self.encode(x_dense)
        return F.softmax(mu, dim=1)  # (B, K)

    @torch.no_grad()
    def topic_word(self) -> Tensor:
        """Each topic's word distribution: the decoder applied to a pure topic, shape ``(K, V)``, rows sum to 1.

        With decoder batch norm this uses its running statistics (as in ``eval()``). The
        embedding decoder's topics are its ``beta`` rows, normalized (ECRTM reads them so). Without
        decoder batch norm, the linear decoder's topic ``k`` is ``softmax(W[:, k])``: SageMaker NTM's
        projection weights, which its 20 Newsgroups notebook plots as the topics' word clouds. The
        bias ``b`` is the background every document shares; with it, every topic shows the same
        common words (TU 0.15-0.2 on 20 Newsgroups, issue 18).
        """
        if self.decoder_kind == "embedding":
            b = self.beta()  # (K, V)
            return b / b.sum(dim=1, keepdim=True)
        eye = torch.eye(self.num_topics, dtype=self.decoder.weight.dtype, device=self.decoder.weight.device)
        if not isinstance(self.decoder_bn, nn.BatchNorm1d):
            return F.softmax(self.decoder.weight.t(), dim=1)  # (K, V): W's columns, without the background b
        logits = self.decoder(eye)  # (K, V)
        if isinstance(self.decoder_bn, nn.BatchNorm1d):
            bn = self.decoder_bn
            logits = (logits - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
        return F.softmax(logits, dim=1)


def check_decoder_args(decoder: str, embedding_dim: int, beta_temperature: float) -> None:
    """Validate the decoder options; raise ``ValueError`` naming the argument and the fix."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r}: choose one of {list(DECODERS)}.")
    if not isinstance(embedding_dim, int) or embedding_dim < 2:
        raise ValueError(f"embedding_dim={embedding_dim!r}: use an integer >= 2 such as 200.")
    if not beta_temperature > 0 or math.isinf(beta_temperature):
        raise ValueError(f"beta_temperature={beta_temperature!r}: use a positive number such as 0.2.")


def check_model_args(
    vocab_size: int,
    num_topics: int,
    encoder_layers_activation: str,
    topic_activation: str,
    prior: str,
    dirichlet_alpha: float,
    dropout: float,
) -> None:
    """Validate the model's arguments; raise ``ValueError`` naming the argument and the fix."""
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size (feature_dim)={vocab_size!r}: the vocabulary needs at least 2 words.")
    if not isinstance(num_topics, int) or not 2 <= num_topics <= 1000:
        raise ValueError(f"num_topics={num_topics!r}: use an integer between 2 and 1000.")
    if encoder_layers_activation not in ACTIVATIONS:
        raise ValueError(f"encoder_layers_activation={encoder_layers_activation!r}: choose one of {list(ACTIVATIONS)}.")
    if topic_activation not in TOPIC_ACTIVATIONS:
        raise ValueError(f"topic_activation={topic_activation!r}: choose one of {list(TOPIC_ACTIVATIONS)}.")
    if prior not in PRIORS:
        raise ValueError(f"prior={prior!r}: choose one of {list(PRIORS)}.")
    if not dirichlet_alpha > 0 or math.isinf(dirichlet_alpha):
        raise ValueError(f"dirichlet_alpha={dirichlet_alpha!r}: use a positive number such as 0.02 or 1.0.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r}: use a probability in [0, 1).")
