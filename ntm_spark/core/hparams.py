"""The hyperparameters: the one declaration that the config, the presets, the model and the system derive from.

Each field of :class:`Hyperparameters` is one hyperparameter: its name (SageMaker NTM's where
it has one), its type, its config default, a doc string, its valid range, and the component
that consumes it:

* ``model``: an argument of :class:`~lightning_module.model.NTMModel` (the architecture);
* ``system``: an argument of :class:`~lightning_module.system.NTMSystem` (optimizer, KL
  warm-up, gradient handling, regularizer weight);
* ``data``: read by the data module or checked against the data (batch size, sub-sampling);
* ``trainer``: read by the training loop (epochs and the early-stopping rule).

``TrainConfig`` (``conf/base/train.yaml``) inherits these fields; ``NTMModel`` and
``NTMSystem`` accept exactly the fields of their component (:func:`take_hparams`).

A field whose config default is ``None`` and which :data:`PRESETS` names takes the preset's
value (:func:`resolve_presets`). ``sagemaker`` is the seed's architecture with SageMaker NTM's
hyperparameters and what it takes not to collapse (see :data:`PRESETS`), and is also what
``NTMModel``/``NTMSystem`` use for an argument left out (:data:`DEFAULTS`); ``default`` is the
preset chosen by measured topic quality (BENCHMARKS.md).

Adding a hyperparameter: declare it here (with a value in every preset if a preset should
set it), then use it where its component reads it; ``train.yaml`` gets its commented line.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional, Union

#: Who reads a hyperparameter (see the module docstring).
MODEL, SYSTEM, DATA, TRAINER = "model", "system", "data", "trainer"
CONSUMERS = (MODEL, SYSTEM, DATA, TRAINER)

# The choices, declared once: the config's types, and the model's and system's checks.
Activation = Literal["sigmoid", "tanh", "relu", "softplus"]
EncoderInput = Literal["counts", "log1p"]
TopicActivation = Literal["softmax", "sigmoid", "tanh", "identity"]
Prior = Literal["normal", "dirichlet"]
Decoder = Literal["linear", "embedding"]
Optimizer = Literal["adadelta", "sgd", "adam", "rmsprop", "adagrad"]
PresetName = Literal["default", "sagemaker"]


def hparam(
    default: Any,
    consumer: str,
    doc: str,
    *,
    valid: Optional[Callable[[Any], bool]] = None,
    fix: str = "",
    sagemaker: bool = False,
) -> Any:
    """Declare one hyperparameter as a dataclass field.

    Args:
        default: The config default; ``None`` for a field the preset fills.
        consumer: ``model``, ``system``, ``data`` or ``trainer``.
        doc: What it does, for readers and the table test.
        valid: A range check on a non-null value (types are checked by the config loader).
        fix: What to write instead, for the error message when ``valid`` fails.
        sagemaker: The name and meaning are SageMaker NTM's.

    Returns:
        A ``dataclasses.field`` carrying the rest in its metadata.
    """
    if consumer not in CONSUMERS:
        raise ValueError(f"consumer={consumer!r}: choose one of {list(CONSUMERS)}.")
    return field(default=default, metadata={"consumer": consumer, "doc": doc, "valid": valid, "fix": fix, "sagemaker": sagemaker})


def _positive(v: Any) -> bool:
    return v > 0


def _valid_encoder_layers(v: Any) -> bool:
    if v == "auto":
        return True
    return isinstance(v, list) and bool(v) and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in v)


@dataclass
class Hyperparameters:
    """Every NTM hyperparameter, in ``train.yaml``'s order (the table; see the module docstring)."""

    # SageMaker NTM hyperparameters.
    feature_dim: Optional[int] = hparam(
        None, DATA, "Vocabulary size V; null takes it from vocab.txt (the model's vocab_size always does).",
        valid=lambda v: v >= 2, fix="leave it null (vocabulary size) or use >= 2", sagemaker=True,
    )
    num_topics: int = hparam(
        20, MODEL, "Number of topics K.", valid=lambda v: 2 <= v <= 1000, fix="use an integer between 2 and 1000", sagemaker=True,
    )
    encoder_layers: Union[str, list] = hparam(
        "auto", MODEL, "Encoder hidden widths, or 'auto' for [3K, 2K].",
        valid=_valid_encoder_layers, fix="use 'auto' ([3K, 2K]) or a list of positive integers such as [100, 50]", sagemaker=True,
    )
    encoder_layers_activation: Optional[Activation] = hparam(None, MODEL, "Encoder activation.", sagemaker=True)
    batch_norm: Optional[bool] = hparam(
        None, MODEL, "Batch norm after each encoder layer and on mu (not on log sigma: that made the KL explode).", sagemaker=True,
    )
    optimizer: Optional[Optimizer] = hparam(None, SYSTEM, "The optimizer.", sagemaker=True)
    learning_rate: Optional[float] = hparam(
        None, SYSTEM, "Step size; adadelta ignores it, as MXNet's AdaDelta that SageMaker NTM runs on does.",
        valid=lambda v: 1e-6 <= v <= 1.0, fix="use a number in [1e-6, 1]", sagemaker=True,
    )
    mini_batch_size: int = hparam(
        256, DATA, "Documents per batch per instance (a machine; an executor under TorchDistributor), divided over its devices.",
        valid=lambda v: 1 <= v <= 10000, fix="use an integer between 1 and 10000", sagemaker=True,
    )
    epochs: int = hparam(
        50, TRAINER, "Maximum epochs (early stopping may end sooner).",
        valid=lambda v: 1 <= v <= 100, fix="use an integer between 1 and 100", sagemaker=True,
    )
    num_patience_epochs: int = hparam(
        3, TRAINER, "Epochs without relative improvement above tolerance before training stops.",
        valid=lambda v: 1 <= v <= 100, fix="use an integer between 1 and 100", sagemaker=True,
    )
    tolerance: float = hparam(
        0.001, TRAINER, "Relative improvement of the monitored loss that counts for early stopping.",
        valid=lambda v: 1e-6 <= v <= 0.1, fix="use a number in [1e-6, 0.1]", sagemaker=True,
    )
    clip_gradient: Optional[float] = hparam(
        None, SYSTEM, "Clip each gradient value to [-c, c]; null = off.",
        valid=lambda v: v >= 1e-3, fix="use null (no clipping) or a number >= 1e-3", sagemaker=True,
    )
    rescale_gradient: float = hparam(
        1.0, SYSTEM, "Multiplies the gradients (the loss, before the backward pass).",
        valid=lambda v: 1e-3 <= v <= 1.0, fix="use a number in [1e-3, 1]", sagemaker=True,
    )
    weight_decay: float = hparam(
        0.0, SYSTEM, "L2 weight decay.", valid=lambda v: 0 <= v <= 1.0, fix="use a number in [0, 1]", sagemaker=True,
    )
    sub_sample: float = hparam(
        1.0, DATA, "Fraction of the training data used per epoch.", valid=lambda v: 0 < v <= 1, fix="use a fraction in (0, 1]", sagemaker=True,
    )
    # Model options beyond SageMaker's (null -> preset).
    encoder_input: Optional[EncoderInput] = hparam(
        None, MODEL, "counts (the seed) or log1p: log(1 + x), so long documents no longer saturate the encoder.",
    )
    topic_activation: Optional[TopicActivation] = hparam(None, MODEL, "g in z = g(h).")
    prior: Optional[Prior] = hparam(None, MODEL, "normal (N(0, I), the seed) or dirichlet (its Laplace approximation, ProdLDA).")
    dirichlet_alpha: Optional[float] = hparam(
        None, MODEL, "Concentration of the Dirichlet prior (all topics alike).", valid=_positive, fix="use a positive number",
    )
    decoder_batch_norm: Optional[bool] = hparam(None, MODEL, "Batch norm (no affine) on the decoder logits, as in ProdLDA.")
    dropout: Optional[float] = hparam(
        None, MODEL, "Dropout on the encoder output and on z during training.", valid=lambda v: 0 <= v < 1, fix="use a probability in [0, 1)",
    )
    kl_warmup_epochs: Optional[int] = hparam(
        None, SYSTEM, "Epochs over which the KL weight rises linearly from 0 to 1 (0: no warm-up).",
        valid=lambda v: v >= 0, fix="use an integer >= 0",
    )
    adam_beta1: Optional[float] = hparam(
        None, SYSTEM, "Adam's first-moment decay, betas=(adam_beta1, 0.999); only adam uses it.",
        valid=lambda v: 0.0 <= v < 1.0, fix="use a number in [0, 1) such as 0.9 or 0.99",
    )
    min_epochs: Optional[int] = hparam(
        None, TRAINER, "The early-stopping rule is first applied at the end of this epoch (0: from the first).",
        valid=lambda v: 0 <= v <= 100, fix="use an integer between 0 and 100 (0: early stopping from the first epoch)",
    )
    decoder: Optional[Decoder] = hparam(
        None, MODEL, "linear (W z + b, the seed) or embedding (ECRTM: W from fixed word vectors and learned topic vectors).",
    )
    word_embeddings: Optional[str] = hparam(
        None, SYSTEM,
        "Where the embedding decoder's fixed word vectors come from: ppmi (the training split) or a .npy of "
        "(V, embedding_dim); the system records it, training turns it into the vectors.",
        valid=lambda v: v == "ppmi" or str(v).endswith(".npy"),
        fix="use ppmi (vectors from the training split) or the path of a .npy file",
    )
    embedding_dim: Optional[int] = hparam(
        None, MODEL, "Word/topic vector size of the embedding decoder.",
        valid=lambda v: 2 <= v <= 4096, fix="use an integer between 2 and 4096 such as 200",
    )
    beta_temperature: Optional[float] = hparam(
        None, MODEL, "Softmax temperature of the embedding decoder's beta.", valid=_positive, fix="use a positive number such as 0.2",
    )
    ecr_weight: Optional[float] = hparam(
        None, SYSTEM, "Weight of the embedding-clustering regularizer in the training loss (0: off; inert with the linear decoder).",
        valid=lambda v: v >= 0, fix="use a number >= 0 such as 1000 (0 turns the regularizer off)",
    )
    ecr_background_mass: Optional[float] = hparam(
        None, SYSTEM,
        "Share of the vocabulary that the clustering regularizer sends to a background point (the mean word vector) "
        "instead of the topics (0: ECRTM's balanced transport, every topic takes V/K words; inert when ecr_weight is 0).",
        valid=lambda v: 0.0 <= v < 1.0, fix="use a number in [0, 1) such as 0.3 (0: every word goes to the topics)",
    )
    topic_similarity_weight: Optional[float] = hparam(
        None, SYSTEM,
        "Weight of a penalty in the training loss: the mean squared cosine similarity between the words the "
        "linear decoder's topics raise above the background, relu(W)'s columns (0: off; inert with the embedding decoder).",
        valid=lambda v: v >= 0, fix="use a number >= 0 such as 30 (0 turns the penalty off)",
    )
    sample_latent: bool = hparam(True, SYSTEM, "Sample h during training (false uses h = mu; for tests).")


#: Values of the preset fields: a config value left null takes its preset's.
PRESETS: dict[str, dict[str, Any]] = {
    # The seed architecture and SageMaker NTM's hyperparameters, with what it takes not to collapse
    # (issue 18; docs/train.md): batch norm on (SageMaker's documented default is off), early
    # stopping from epoch 30, the linear decoder's bias started at the corpus's log word
    # frequencies and its topics read from W's columns (as SageMaker's notebook plots them).
    "sagemaker": {
        "encoder_layers_activation": "sigmoid",
        # Off, the seed collapsed: KL 0.002 nats and NMI 0.02 on short documents, top-25 diversity
        # 0.45 on 20 Newsgroups; on, diversity 0.90 and NMI 0.47 at K=20 (BENCHMARKS.md).
        "batch_norm": True,
        "encoder_input": "counts",
        "topic_activation": "softmax",
        "prior": "normal",
        "dirichlet_alpha": 1.0,
        "decoder_batch_norm": False,
        "dropout": 0.0,
        "kl_warmup_epochs": 0,
        "optimizer": "adadelta",
        "learning_rate": 0.001,
        "adam_beta1": 0.9,  # inert under adadelta; MXNet's Adam default if optimizer=adam
        # The early-stopping rule is first applied after epoch 30: from the first epoch, a decoder
        # started at the corpus's word frequencies improves by < tolerance at once and stopped at
        # epoch 4 with KL 0.04 (posterior collapse; issue 18). AdaDelta's first steps are tiny.
        "min_epochs": 30,
        "decoder": "linear",  # W z + b
        "word_embeddings": "ppmi",  # inert with the linear decoder
        "embedding_dim": 200,
        "beta_temperature": 0.2,
        "ecr_weight": 0.0,
        "ecr_background_mass": 0.0,  # inert with ecr_weight 0
        # Not a SageMaker hyperparameter: an added training-loss term, so that topics do not raise the same
        # words (NTMModel.topic_similarity). Without it, at K=50 the topics beyond the corpus's clusters
        # became copies of one another (top-25 diversity 0.490 +- 0.041, 3 seeds); with 30, 0.801 +- 0.002,
        # NPMI 0.215 -> 0.184 (online LDA: 0.127), NMI 0.454 -> 0.444; K=20 0.897 -> 0.941. A wider initial
        # W, KL warm-up, batch size, dropout, longer training and a penalty on W's raw cosine did not get
        # there (issue 18; docs/train.md).
        "topic_similarity_weight": 30.0,
    },
    # ProdLDA-style: log1p encoder input, Laplace-Dirichlet(1) prior, BN on the encoder and on mu;
    # picked by NPMI, diversity and NMI on the 20 Newsgroups by-date split (BENCHMARKS.md).
    "default": {
        "encoder_layers_activation": "softplus",
        "batch_norm": True,
        "encoder_input": "log1p",
        "topic_activation": "softmax",
        "prior": "dirichlet",
        "dirichlet_alpha": 1.0,
        # No batch norm on the decoder logits and no dropout (issue 18): with them, the encoder's
        # argmax topic matched the newsgroup at NMI 0.22-0.24; without them 0.43-0.44 at K=20 and
        # 50, with NPMI and diversity as good or better (BENCHMARKS.md).
        "decoder_batch_norm": False,
        "dropout": 0.0,
        # KL weight 0 -> 1 over the first 10 epochs; the topics form after the loss has nearly
        # plateaued, so SageMaker's early-stopping rule is first applied after epoch 40.
        "kl_warmup_epochs": 10,
        "optimizer": "adam",
        "learning_rate": 0.005,
        "adam_beta1": 0.99,  # ProdLDA's Adam beta1
        "min_epochs": 40,
        # ECRTM's decoder and clustering regularizer over fixed PPMI-SVD word vectors of the
        # training split: topics coherent and distinct at K=20 and 50 on 20NG, against
        # NPMI 0.01-0.17 / diversity 0.49-0.81 for the linear decoder (BENCHMARKS.md).
        "decoder": "embedding",
        "word_embeddings": "ppmi",
        "embedding_dim": 200,
        "beta_temperature": 0.2,
        "ecr_weight": 1000.0,
        # 30% of the vocabulary goes to a background point instead of the topics (partial transport):
        # ECRTM's balanced transport made every topic take V/K words, and at K = 50 about a fifth of the
        # topics held generic words. NPMI, 3 seeds: short documents K=20 0.354 -> 0.379, K=50 0.309 -> 0.326;
        # full-length K=50 0.301 -> 0.327, K=20 0.367 -> 0.360 (issue 18, BENCHMARKS.md).
        "ecr_background_mass": 0.3,
        "topic_similarity_weight": 0.0,  # inert with the embedding decoder (ECR keeps its topics apart)
    },
}
#: The fields a preset fills (every preset names the same ones).
PRESET_FIELDS: tuple[str, ...] = tuple(PRESETS["sagemaker"])


def hparam_fields(*consumers: str) -> tuple[dataclasses.Field, ...]:
    """Return the declared fields, in order; only those of ``consumers`` when given."""
    for c in consumers:
        if c not in CONSUMERS:
            raise ValueError(f"consumer={c!r}: choose one of {list(CONSUMERS)}.")
    return tuple(f for f in dataclasses.fields(Hyperparameters) if not consumers or f.metadata["consumer"] in consumers)


def hparam_names(*consumers: str) -> tuple[str, ...]:
    """Return the names of :func:`hparam_fields`."""
    return tuple(f.name for f in hparam_fields(*consumers))


def resolve_presets(h: Any, preset: str) -> dict[str, Any]:
    """Return preset ``preset``'s values overlaid with ``h``'s non-null ones (the preset fields only).

    Args:
        h: A :class:`Hyperparameters` (a ``TrainConfig`` is one) or a mapping of names to values.
        preset: A key of :data:`PRESETS`.

    Raises:
        ValueError: for an unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: choose one of {list(PRESETS)}.")
    get = h.get if isinstance(h, Mapping) else (lambda name: getattr(h, name, None))
    options = dict(PRESETS[preset])
    for name in PRESET_FIELDS:
        value = get(name)
        if value is not None:
            options[name] = value
    return options


def resolve_hparams(h: Any, preset: str) -> dict[str, Any]:
    """Return every hyperparameter of ``h`` with the null preset fields filled from ``preset``, in declaration order."""
    return {**{name: getattr(h, name) for name in hparam_names()}, **resolve_presets(h, preset)}


#: What each hyperparameter is when nothing sets it: the config defaults under the ``sagemaker``
#: preset; ``NTMModel`` and ``NTMSystem`` use these for an argument left out.
DEFAULTS: dict[str, Any] = resolve_hparams(Hyperparameters(), "sagemaker")


def take_hparams(given: Mapping[str, Any], consumers: tuple[str, ...], owner: str) -> dict[str, Any]:
    """Return the hyperparameters that ``consumers`` read: the given values, else :data:`DEFAULTS`.

    Args:
        given: Keyword arguments that a constructor received.
        consumers: The components whose fields it takes, e.g. ``(MODEL,)``.
        owner: The constructor's name, for the error message.

    Raises:
        TypeError: for a name that is not one of those fields.
    """
    names = hparam_names(*consumers)
    unknown = [name for name in given if name not in names]
    if unknown:
        raise TypeError(
            f"{owner}() got an unexpected keyword argument {unknown[0]!r}: its hyperparameters are {list(names)} "
            "(declared in ntm_spark/core/hparams.py); check the spelling."
        )
    return {name: given.get(name, DEFAULTS[name]) for name in names}


def invalid_hparam(h: Any) -> Optional[tuple[str, Any, str]]:
    """Return ``(name, value, fix)`` of the first non-null value of ``h`` out of its declared range, or ``None``."""
    for f in hparam_fields():
        value = getattr(h, f.name)
        check = f.metadata["valid"]
        if value is not None and check is not None and not check(value):
            return f.name, value, f.metadata["fix"]
    return None


def plain_value(name: str, value: Any) -> Any:
    """Return ``value`` as the plain type that hyperparameter ``name`` is declared with (``int``, ``float``, ``bool``)."""
    tp = typing.get_type_hints(Hyperparameters)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is Union else [tp]
    if len(args) == 1 and args[0] in (int, float, bool):
        return args[0](value)
    return value
