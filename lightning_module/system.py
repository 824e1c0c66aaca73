"""The Lightning *system*: optimizer, KL warm-up, logging and topic-quality metrics around :class:`NTMModel`.

Metrics, all synced across ranks at the end of each epoch (sums all-reduced, so
they are exact for the whole split however it is sharded):

* ``{stage}/loss``, ``{stage}/recon``, ``{stage}/kl`` per document, for ``train``,
  ``val`` and ``test`` (``train/batch_loss`` per step for the progress bar);
* ``val/perplexity``, ``test/perplexity``: ``exp(sum(recon + kl) / sum(words))``;
* ``val/npmi`` (top 10 words; :mod:`ntm_spark.core.topic_metrics`'s one definition, over
  :attr:`NTMSystem.coherence_reference` when training sets it, by default the training split
  plus the held-out split, else over the stage's own documents), ``val/tu`` and
  ``val/diversity`` (top 25), and the same for ``test``.

Validation and test use ``h = mu`` (no sampling), so the monitored loss is
deterministic, which early stopping relies on.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Mapping, Optional, get_args

import numpy as np
import torch
from torch import Tensor

from lightning_module._compat import pl
from lightning_module.data import densify_batch
from lightning_module.model import NTMModel, ntm_loss_per_doc
from ntm_spark.core.hparams import MODEL, SYSTEM, Optimizer, hparam_names, take_hparams
from ntm_spark.core.topic_metrics import (
    CoherenceReference,
    npmi_from_pair_counts,
    top_words,
    topic_diversity,
    topic_pairs,
    topic_uniqueness,
)

log = logging.getLogger(__name__)

OPTIMIZERS = get_args(Optimizer)
_ACC_KEYS = ("recon", "kl", "docs", "words")  # the per-epoch sums, in the order of NTMSystem._acc


class NTMSystem(pl.LightningModule):
    """Trains :class:`~lightning_module.model.NTMModel` with SageMaker NTM's optimization settings.

    Its hyperparameters are the ``model`` and ``system`` fields of
    :class:`ntm_spark.core.hparams.Hyperparameters`, which documents each one; one left out
    takes the ``sagemaker`` preset's value. ``hparams`` (and checkpoints) hold them all, with
    the arguments below except ``word_vectors``.

    Args:
        vocab_size: Vocabulary size (``feature_dim``).
        num_topics: Number of topics K.
        npmi_top_n: Top words per topic for NPMI and TU.
        diversity_top_n: Top words per topic for diversity.
        num_threads: ``torch.set_num_threads`` for this process (``None`` leaves it).
        word_vectors: Fixed word vectors ``(V, embedding_dim)`` for the embedding decoder; not
            saved in the hyperparameters (the model's state_dict holds them).
        background: The linear decoder's initial bias, the training split's log word frequencies
            ``(V,)``; not saved in the hyperparameters (it is only a starting point).
        direct_steps: Let training steps skip Lightning's per-step wrappers where they would
            do nothing (see :meth:`_direct_steps`); the updates are the same either way.
        **hparams: The other hyperparameters by name: the model's (passed to :class:`NTMModel`)
            and the system's. Of these, ``optimizer`` and ``learning_rate`` follow SageMaker NTM
            (``adadelta`` ignores the rate, as MXNet's AdaDelta does: its step is
            ``sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g``); ``rescale_gradient`` scales the loss
            before the backward pass and ``clip_gradient`` clips each gradient value to ``[-c, c]``;
            ``ecr_weight`` adds the embedding-clustering regularizer to each training step's loss,
            not to the logged ``loss``/``recon``/``kl`` (``train/ecr`` is logged with the batch loss), and
            ``topic_similarity_weight`` likewise the linear decoder's :meth:`~NTMModel.topic_similarity`
            (``train/topic_similarity``).

    Raises:
        TypeError: for a keyword that is neither a ``model`` nor a ``system`` hyperparameter.
        ValueError: for a value out of range, naming the argument and the fix.
    """

    def __init__(
        self,
        vocab_size: int,
        num_topics: int,
        *,
        npmi_top_n: int = 10,
        diversity_top_n: int = 25,
        num_threads: Optional[int] = None,
        word_vectors: Optional[Tensor] = None,
        background: Optional[Tensor] = None,
        direct_steps: bool = True,
        **hparams: Any,
    ) -> None:
        super().__init__()
        h = take_hparams({"num_topics": num_topics, **hparams}, (MODEL, SYSTEM), "NTMSystem")
        optimizer, learning_rate, adam_beta1 = h["optimizer"], h["learning_rate"], h["adam_beta1"]
        kl_warmup_epochs, ecr_weight, similarity_weight = h["kl_warmup_epochs"], h["ecr_weight"], h["topic_similarity_weight"]
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r}: choose one of {list(OPTIMIZERS)}.")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate={learning_rate!r}: use a positive number such as 0.001.")
        if kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs={kl_warmup_epochs!r}: use an integer >= 0 (0 disables warm-up).")
        if not 0.0 <= adam_beta1 < 1.0:
            raise ValueError(f"adam_beta1={adam_beta1!r}: use a number in [0, 1) such as 0.9 or 0.99.")
        if not ecr_weight >= 0 or math.isinf(ecr_weight):
            raise ValueError(f"ecr_weight={ecr_weight!r}: use a number >= 0 such as 1000 (0 turns the regularizer off).")
        background_mass = h["ecr_background_mass"]
        if not 0.0 <= background_mass < 1.0:
            raise ValueError(f"ecr_background_mass={background_mass!r}: use a number in [0, 1) such as 0.3 (0: every word goes to the topics).")
        if not similarity_weight >= 0 or math.isinf(similarity_weight):
            raise ValueError(
                f"topic_similarity_weight={similarity_weight!r}: use a number >= 0 such as 30 (0 turns the penalty off)."
            )
        self.save_hyperparameters(
            {
                "vocab_size": vocab_size,
                **h,
                "npmi_top_n": npmi_top_n,
                "diversity_top_n": diversity_top_n,
                "num_threads": num_threads,
                "direct_steps": direct_steps,
            }
        )
        # Manual optimization: a training "batch" may hold several optimizer steps
        # (``steps_per_execution``), which spreads Lightning's per-call overhead over them.
        self.automatic_optimization = False
        self.model = NTMModel.from_hparams(h, vocab_size, word_vectors=word_vectors, background=background)
        self._acc: dict[str, Tensor] = {}
        self._topic_state: dict[str, Any] = {}
        self.last_topic_metrics: dict[str, dict[str, Any]] = {}
        #: The NPMI reference documents (set by training before ``fit``); ``None``: each stage's own documents.
        self.coherence_reference: Optional[CoherenceReference] = None

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], vocab_size: int, **kwargs: Any) -> "NTMSystem":
        """Build a system from resolved hyperparameters, taking the ``model`` and ``system`` fields and ignoring the rest.

        Args:
            hparams: Hyperparameter names to values, e.g. :func:`ntm_spark.core.hparams.resolve_hparams`.
            vocab_size: Vocabulary size (from ``vocab.txt``).
            **kwargs: The other arguments (``num_threads``, ``word_vectors``...).
        """
        return cls(vocab_size, **{name: hparams[name] for name in hparam_names(MODEL, SYSTEM) if name in hparams}, **kwargs)

    # ------------------------------------------------------------------ hooks, in Lightning's order

    def setup(self, stage: str) -> None:
        """Per-process state: thread count (ranks on one machine share its cores)."""
        if self.hparams.num_threads:
            torch.set_num_threads(int(self.hparams.num_threads))

    def forward(self, x: Tensor) -> Tensor:
        """Return deterministic topic weights ``(B, K)`` for word counts ``(B, V)``."""
        return self.model.infer_topics(x)

    def kl_weight(self) -> float:
        """Return the current KL weight (linear warm-up over ``kl_warmup_epochs``)."""
        warm = self.hparams.kl_warmup_epochs
        if not warm or self._trainer is None:
            return 1.0
        steps = getattr(getattr(self.trainer, "datamodule", None), "train_steps_per_epoch", None)  # grouped batches
        if steps:
            per_epoch = int(steps)
        else:
            n = self.trainer.num_training_batches
            per_epoch = max(1, int(n or 1)) if math.isfinite(n) else 1
        return min(1.0, (self.global_step + 1) / (warm * per_epoch))

    def _shared_step(self, batch: dict[str, Any], stage: str) -> Tensor:
        x = densify_batch(batch, self.model.vocab_size)  # (B, V)
        weight = batch["weight"].to(x.dtype)  # (B,), 0 for padding rows
        train = stage == "train"
        log_y, mu, logvar = self.model(x, sample=train and self.hparams.sample_latent, mask=weight)
        prior = (self.model.prior_mu, self.model.prior_var) if self.model.use_prior_buffers else (None, None)
        recon, kl = ntm_loss_per_doc(x, log_y, mu, logvar, *prior)  # (B,), (B,)
        kl_w = self.kl_weight() if train else 1.0
        denom = weight.sum().clamp_min(1.0)
        loss = ((recon + kl_w * kl) * weight).sum() / denom
        ecr = None
        if train and self.hparams.ecr_weight and self.model.decoder_kind == "embedding":
            ecr = self.model.clustering_cost(self.hparams.ecr_background_mass)
            loss = loss + self.hparams.ecr_weight * ecr
        similarity = None
        if train and self.hparams.topic_similarity_weight and self.model.decoder_kind == "linear":
            similarity = self.model.topic_similarity()
            loss = loss + self.hparams.topic_similarity_weight * similarity
        # One fused weighted sum of (recon, kl, docs, words): few kernels, no host sync per step.
        terms = torch.stack([recon.detach(), kl.detach(), torch.ones_like(recon), x.sum(dim=1)], dim=1)  # (B, 4)
        self._acc[stage] += (terms * weight[:, None]).sum(dim=0).to(torch.float64)  # not a matmul: TF32 would round it
        if not train and self.coherence_reference is None:
            self._accumulate_cooccurrence(x, weight, stage)
        elif self._trainer is None or self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            # Lightning's self.log costs ~0.5 ms per call; the batch loss is shown every log_every_n_steps.
            self.log("train/batch_loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=x.shape[0])
            if ecr is not None:
                self.log("train/ecr", ecr.detach(), on_step=True, on_epoch=False, batch_size=x.shape[0])
            if similarity is not None:
                self.log("train/topic_similarity", similarity.detach(), on_step=True, on_epoch=False, batch_size=x.shape[0])
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimizer step per mini-batch: one, or the ``"steps"`` of a grouped batch.

        The loss is scaled by ``rescale_gradient`` before the backward pass and gradients
        are clipped by value to ``clip_gradient``; returns the last step's loss.
        """
        opt = self.optimizers()
        hp = self.hparams
        direct = self._direct_steps()
        loss = None
        for step in batch["steps"] if "steps" in batch else (batch,):
            loss = self._shared_step(step, "train")
            if hp.rescale_gradient != 1.0:
                loss = loss * hp.rescale_gradient
            if direct:  # the same updates without Lightning's per-step wrappers (see _direct_steps)
                opt.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                opt._on_before_step()  # Lightning's step counter (global_step), as opt.step() does
                opt.optimizer.step()
                opt._on_after_step()
                continue
            opt.zero_grad()
            self.manual_backward(loss)
            if hp.clip_gradient:
                self.clip_gradients(opt, gradient_clip_val=hp.clip_gradient, gradient_clip_algorithm="value")
            opt.step()
        return loss.detach()

    #: Hooks that ``manual_backward``/``opt.step()`` run around each step; with none overridden they are no-ops.
    _STEP_HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")

    def _direct_steps(self) -> bool:
        """Whether a training step may call ``loss.backward()`` and the optimizer directly.

        True only where Lightning's wrappers would add nothing: one device (no DDP reducer
        to prepare), full precision (no loss scaling), no gradient clipping, and no callback
        or module override of the backward/optimizer-step hooks. Lightning's wrappers cost
        about 0.3–1 ms per step, which a small model on a GPU notices (BENCHMARKS.md).
        ``NTMSystem(direct_steps=False)`` turns it off.
        """
        cached = getattr(self, "_direct", None)
        if cached is not None and cached[0] is self._trainer:
            return cached[1]
        tr = self._trainer
        ok = (
            tr is not None
            and self.hparams.get("direct_steps", True)  # checkpoints from before the option: on
            and type(tr.strategy) is pl.strategies.SingleDeviceStrategy
            and type(tr.precision_plugin) is pl.plugins.precision.Precision
            and not self.hparams.clip_gradient
            and all(getattr(type(cb), h) is getattr(pl.Callback, h) for cb in tr.callbacks for h in self._STEP_HOOKS)
            and all(getattr(type(self), h) is getattr(pl.LightningModule, h) for h in self._STEP_HOOKS + ("backward",))
        )
        self._direct = (tr, bool(ok))
        return bool(ok)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate validation sums and co-occurrence counts."""
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate test sums and co-occurrence counts."""
        self._shared_step(batch, "test")

    def on_train_epoch_start(self) -> None:
        """Reset the epoch sums."""
        self._reset("train")
        self._train_logged = False

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the epoch's last batch, log the synced training loss terms.

        Done here rather than in ``on_train_epoch_end`` so that callbacks (early
        stopping on ``train/loss``, the epoch log line) see this epoch's values.
        """
        n = self.trainer.num_training_batches
        if math.isfinite(n) and batch_idx + 1 == int(n):
            self._log_epoch("train")
            self._train_logged = True

    def on_train_epoch_end(self) -> None:
        """Log the training loss terms if the batch count was unknown."""
        if not getattr(self, "_train_logged", False):
            self._log_epoch("train")

    def on_validation_epoch_start(self) -> None:
        """Reset sums and fix this epoch's top words for NPMI."""
        self._reset("val")

    def on_validation_epoch_end(self) -> None:
        """Log synced loss terms, perplexity, NPMI, TU and diversity."""
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        """Reset sums and fix the top words for NPMI."""
        self._reset("test")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self._log_epoch("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Build SageMaker NTM's optimizer choice."""
        hp = self.hparams
        params, lr, wd = self.model.parameters(), hp.learning_rate, hp.weight_decay
        if hp.optimizer == "adadelta":
            return torch.optim.Adadelta(params, lr=1.0, rho=0.9, eps=1e-5, weight_decay=wd)
        if hp.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, weight_decay=wd)
        if hp.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=(float(hp.adam_beta1), 0.999), weight_decay=wd)
        if hp.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)

    # ------------------------------------------------------------------ metrics

    def _reset(self, stage: str) -> None:
        dev = self.device
        self._acc[stage] = torch.zeros(len(_ACC_KEYS), dtype=torch.float64, device=dev)  # recon, kl, docs, words
        if stage == "train":
            return
        topic_word = self.model.topic_word().float().cpu().numpy()  # (K, V)
        if self._trainer is not None and self.trainer.world_size > 1:
            # Rank 0's topics define the words every rank counts (BN running stats may differ per rank).
            topic_word = self.trainer.strategy.broadcast(topic_word, src=0)
        top = top_words(topic_word, self.hparams.npmi_top_n)  # (K, n)
        union, inv = np.unique(top, return_inverse=True)
        inv = inv.reshape(top.shape)
        a, b = topic_pairs(top.shape[1])
        self._topic_state[stage] = {
            "topic_word": topic_word,
            "top": top,
            "union": torch.as_tensor(union, device=dev),
            "pair_a": torch.as_tensor(inv[:, a].ravel(), device=dev),  # (K * P,)
            "pair_b": torch.as_tensor(inv[:, b].ravel(), device=dev),
            "df": torch.zeros(len(union), dtype=torch.float64, device=dev),
            "co": torch.zeros(inv[:, a].size, dtype=torch.float64, device=dev),
        }

    def _accumulate_cooccurrence(self, x: Tensor, weight: Tensor, stage: str) -> None:
        st = self._topic_state[stage]
        present = (x[:, st["union"]] > 0).to(torch.float64) * weight[:, None].to(torch.float64)  # (B, U)
        st["df"] += present.sum(dim=0)
        st["co"] += (present[:, st["pair_a"]] * present[:, st["pair_b"]]).sum(dim=0)  # (K * P,)

    def _reduce(self, t: Tensor) -> Tensor:
        if self._trainer is None:
            return t
        return self.trainer.strategy.reduce(t.clone(), reduce_op="sum")

    def _log_epoch(self, stage: str) -> None:
        acc = dict(zip(_ACC_KEYS, self._reduce(self._acc[stage]).cpu().tolist()))
        docs = float(acc["docs"])
        if docs <= 0:
            return
        recon, kl = float(acc["recon"]) / docs, float(acc["kl"]) / docs
        metrics = {f"{stage}/loss": recon + kl, f"{stage}/recon": recon, f"{stage}/kl": kl}
        if stage != "train":
            words = max(float(acc["words"]), 1.0)
            metrics[f"{stage}/perplexity"] = math.exp(min((float(acc["recon"]) + float(acc["kl"])) / words, 700.0))
            st = self._topic_state[stage]
            top = st["top"]
            ref = self.coherence_reference
            if ref is not None:  # the same on every rank: the top words are rank 0's, the reference is whole
                npmi_k, ref_docs = ref.npmi_per_topic(top), float(ref.n_docs)
            else:
                df = self._reduce(st["df"]).cpu().numpy()
                co = self._reduce(st["co"]).cpu().numpy()
                k, n = top.shape
                a_idx, b_idx = st["pair_a"].cpu().numpy(), st["pair_b"].cpu().numpy()
                npmi_k = npmi_from_pair_counts(co.reshape(k, -1), df[a_idx].reshape(k, -1), df[b_idx].reshape(k, -1), docs)
                ref_docs = docs
            tu_k = topic_uniqueness(top, per_topic=True)
            metrics[f"{stage}/npmi"] = float(npmi_k.mean())
            metrics[f"{stage}/tu"] = float(tu_k.mean())
            metrics[f"{stage}/diversity"] = topic_diversity(st["topic_word"], self.hparams.diversity_top_n)
            metrics[f"{stage}/npmi_reference_docs"] = ref_docs
            self.last_topic_metrics[stage] = {"npmi": npmi_k, "tu": tu_k, "topic_word": st["topic_word"], "n_docs": docs}
        # Values are already identical on every rank; sync_dist only keeps Lightning from warning.
        for key, value in metrics.items():
            self.log(key, value, on_step=False, on_epoch=True, prog_bar=key in (f"{stage}/loss", "val/npmi"), sync_dist=True, batch_size=1)
