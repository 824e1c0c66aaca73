import copy

import pytest
import torch

from lightning_module.model import (
    PRESETS,
    MaskedBatchNorm1d,
    NTMModel,
    laplace_dirichlet_prior,
    ntm_loss,
    resolve_encoder_layers,
)


def _counts(b=6, v=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.rand(b, v, generator=g) * 2)


def test_shapes_and_loss_terms():
    torch.manual_seed(0)
    model = NTMModel(30, 4)
    x = _counts()
    log_y, mu, logvar = model(x)
    assert log_y.shape == (6, 30) and mu.shape == (6, 4) and logvar.shape == (6, 4)
    assert torch.allclose(log_y.exp().sum(1), torch.ones(6), atol=1e-5)
    out = model.loss(x)
    assert out.recon > 0 and out.kl >= 0
    assert torch.isclose(out.loss, out.recon + out.kl)
    half = model.loss(x, kl_weight=0.5, sample=False)
    assert torch.isclose(half.loss, half.recon + 0.5 * half.kl)


def test_sagemaker_preset_is_the_seed_architecture():
    p = PRESETS["sagemaker"]
    model = NTMModel(30, 4, encoder_layers_activation=p["encoder_layers_activation"], batch_norm=p["batch_norm"])
    kinds = [type(m).__name__ for m in model.encoder]
    # The seed's layers, with batch norm before each activation (issue 18: off, it collapsed).
    assert kinds == ["Linear", "MaskedBatchNorm1d", "Sigmoid", "Linear", "MaskedBatchNorm1d", "Sigmoid"]
    seed = NTMModel(30, 4, encoder_layers_activation=p["encoder_layers_activation"], batch_norm=False)
    assert [type(m).__name__ for m in seed.encoder] == ["Linear", "Sigmoid", "Linear", "Sigmoid"]
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [12, 8]
    assert isinstance(model.decoder_bn, torch.nn.Identity) and p["optimizer"] == "adadelta" and p["learning_rate"] == 0.001


def test_kl_standard_normal_closed_form():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.3]])
    x, log_y = torch.ones(1, 3), torch.log(torch.full((1, 3), 1 / 3))
    out = ntm_loss(x, log_y, mu, logvar)
    expected = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum()
    assert torch.isclose(out.kl, expected) and torch.isclose(out.recon, 3 * torch.log(torch.tensor(3.0)))


def test_dirichlet_prior_matches_prodlda_formula():
    mu0, var0 = laplace_dirichlet_prior(torch.full((4,), 1.0))
    assert torch.allclose(mu0, torch.zeros(4)) and torch.allclose(var0, torch.full((4,), 0.75))


@pytest.mark.parametrize("batch_norm", [False, True])
def test_padding_weight_zero_is_ignored(batch_norm):
    torch.manual_seed(0)
    model = NTMModel(30, 4, batch_norm=batch_norm, decoder_batch_norm=batch_norm)
    twin = copy.deepcopy(model)
    x = _counts(4)
    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    padded = model.loss(torch.cat([x[:2], torch.zeros(2, 30)]), sample=False, weight=w)
    plain = twin.loss(x[:2], sample=False)
    assert torch.isclose(padded.loss, plain.loss)
    # Batch norm's running statistics saw the real rows only.
    assert all(torch.allclose(a.float(), b.float(), atol=1e-6) for a, b in zip(model.buffers(), twin.buffers()))


def test_masked_batch_norm_is_batch_norm_over_the_real_rows():
    torch.manual_seed(1)
    x = torch.randn(6, 5)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    masked, plain = MaskedBatchNorm1d(5), torch.nn.BatchNorm1d(5)
    y = masked(x, mask)
    ref = plain(x[mask > 0])
    assert torch.allclose(y[mask > 0], ref, atol=1e-6)
    assert torch.allclose(masked.running_mean, plain.running_mean) and torch.allclose(masked.running_var, plain.running_var)
    # Without a mask, or in eval mode, it is nn.BatchNorm1d.
    assert torch.allclose(masked(x), plain(x), atol=1e-6)
    masked.eval(), plain.eval()
    assert torch.allclose(masked(x, mask), plain(x), atol=1e-6)
    # A batch of padding alone: finite output, running statistics untouched.
    before = masked.train().running_mean.clone()
    assert torch.isfinite(masked(x, torch.zeros(6))).all() and torch.equal(masked.running_mean, before)


@pytest.mark.parametrize("preset", ["sagemaker", "default"])
def test_gradcheck_double(preset):
    torch.manual_seed(0)
    p = PRESETS[preset]
    model = NTMModel(
        12, 3, encoder_layers=[5], encoder_layers_activation=p["encoder_layers_activation"], prior=p["prior"],
        dirichlet_alpha=p["dirichlet_alpha"],
    ).double()
    x = _counts(4, 12).double()
    params = [model.mu.weight, model.decoder.weight]

    def f(mu_w, dec_w):
        log_y, mu, logvar = torch.func.functional_call(model, {"mu.weight": mu_w, "decoder.weight": dec_w}, (x,), {"sample": False})
        prior = (model.prior_mu, model.prior_var) if model.use_prior_buffers else (None, None)
        return ntm_loss(x, log_y, mu, logvar, *prior).loss

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-4)


def test_infer_topics_deterministic_rows_sum_to_one_and_topic_word():
    model = NTMModel(30, 5, batch_norm=True, decoder_batch_norm=True, dropout=0.3).eval()
    x = _counts(8)
    a, b = model.infer_topics(x), model.infer_topics(x)
    assert a.shape == (8, 5) and torch.equal(a, b)
    assert torch.allclose(a.sum(1), torch.ones(8), atol=1e-6)
    tw = model.topic_word()
    assert tw.shape == (5, 30) and torch.allclose(tw.sum(1), torch.ones(5), atol=1e-5)


def test_model_has_no_device_calls_and_buffers_follow_state_dict():
    model = NTMModel(30, 4, prior="dirichlet", dirichlet_alpha=0.1)
    assert {"prior_mu", "prior_var"} <= set(model.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_topics": 1}, "num_topics=1"),
        ({"num_topics": 1001}, "num_topics=1001"),
        ({"encoder_layers_activation": "gelu"}, "encoder_layers_activation='gelu'"),
        ({"prior": "laplace"}, "prior='laplace'"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"dirichlet_alpha": 0.0}, "dirichlet_alpha=0.0"),
        ({"encoder_input": "tfidf"}, "encoder_input='tfidf'"),
        ({"encoder_layers": "big"}, "encoder_layers='big'"),
        ({"encoder_layers": [10, 0]}, "encoder_layers="),
    ],
)
def test_invalid_model_args_name_the_parameter(kwargs, match):
    args = {"vocab_size": 30, "num_topics": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        NTMModel(**args)


def test_topic_similarity_is_the_mean_squared_cosine_of_the_raised_words():
    model = NTMModel(6, 3)
    with torch.no_grad():
        model.decoder.weight.copy_(torch.eye(6)[:, :3] * 2.0)  # orthogonal columns, any length
    assert float(model.topic_similarity().detach()) == 0.0
    with torch.no_grad():
        model.decoder.weight.copy_(torch.ones(6, 3))  # every topic the same vector
    assert abs(float(model.topic_similarity().detach()) - 1.0) < 1e-6
    with torch.no_grad():
        model.decoder.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] + [[0.0] * 3] * 3))
    # cos(W0, W1) = 1/sqrt(2), the other pairs 0: the mean over the 6 ordered pairs of cos^2 is 2 * 0.5 / 6.
    assert abs(float(model.topic_similarity().detach()) - 1 / 6) < 1e-6
    with torch.no_grad():  # only the words a topic raises above the background (W > 0) count
        model.decoder.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, -5.0], [-5.0, 0.0, 1.0]] + [[0.0] * 3] * 3))
    assert float(model.topic_similarity().detach()) == pytest.approx(2 * 0.5 / 6, abs=1e-6)  # the -5s would make W0, W2 and W1, W2 anti-similar
    with torch.no_grad():
        model.decoder.weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] + [[0.0] * 3] * 3))
    model.topic_similarity().backward()
    assert model.decoder.weight.grad.abs().sum() > 0  # a penalty the optimizer can follow
    embedding, _ = _embedding_model()
    assert float(embedding.topic_similarity()) == 0.0


def test_resolve_encoder_layers_auto():
    assert resolve_encoder_layers("auto", 20) == [60, 40]


# ----------------------------------------------------------------------------- the embedding decoder (ECRTM)


def _embedding_model(v=30, k=4, d=8, **kw):
    torch.manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(v, d), dim=1)
    return NTMModel(v, k, decoder="embedding", embedding_dim=d, word_vectors=vectors, **kw), vectors


def test_embedding_decoder_shapes_topic_word_and_fixed_word_vectors():
    model, vectors = _embedding_model(batch_norm=True, decoder_batch_norm=True)
    x = _counts()
    log_y, mu, logvar = model(x)
    assert log_y.shape == (6, 30) and torch.allclose(log_y.exp().sum(1), torch.ones(6), atol=1e-5)
    assert not hasattr(model, "decoder") and "word_embeddings" not in dict(model.named_parameters())
    assert torch.equal(model.word_embeddings, vectors)
    beta = model.beta()
    assert beta.shape == (4, 30) and torch.allclose(beta.sum(0), torch.ones(30), atol=1e-5)  # softmax over topics
    tw = model.eval().topic_word()
    assert tw.shape == (4, 30) and torch.allclose(tw.sum(1), torch.ones(4), atol=1e-5)
    # The state_dict carries the vectors: a model rebuilt from its config reads the same topics.
    clone = NTMModel.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    assert model.config["decoder"] == "embedding" and torch.allclose(clone.eval().topic_word(), tw)


def test_embedding_decoder_gradcheck_and_clustering_cost_gradient():
    model, _ = _embedding_model(v=12, k=3, d=4, encoder_layers=[5], prior="dirichlet")
    model = model.double()
    x = _counts(4, 12).double()

    def f(topics):
        log_y, mu, logvar = torch.func.functional_call(model, {"topic_embeddings": topics}, (x,), {"sample": False})
        return ntm_loss(x, log_y, mu, logvar, model.prior_mu, model.prior_var).loss

    topics = model.topic_embeddings.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (topics,), eps=1e-6, atol=1e-4)
    cost = model.clustering_cost()
    cost.backward()
    assert cost > 0 and model.topic_embeddings.grad.abs().sum() > 0
    assert NTMModel(12, 3).clustering_cost() == 0  # the linear decoder has no regularizer


def test_sinkhorn_cost_follows_the_transport_plan():
    from lightning_module.model import sinkhorn_transport_cost

    # Two topics, four words: each topic near two words -> the plan keeps to the cheap cells.
    apart = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.0, 0.0]])
    assert sinkhorn_transport_cost(apart) < 1e-3
    # Both topics near the same two words: half the mass must travel the expensive way (0.5 * 0.5).
    shared = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    assert sinkhorn_transport_cost(shared) == pytest.approx(0.25, abs=1e-3)
    assert sinkhorn_transport_cost(torch.ones(3, 5)) == pytest.approx(1.0, abs=1e-5)


def test_background_mass_takes_the_words_no_topic_is_near():
    from lightning_module.model import sinkhorn_transport_cost

    # Two topics near words 0-1, none near words 2-3 (generic words): balanced transport makes
    # a topic take them (cost 0.5 * 0.5); a background point that is cheap for 2-3 and holding
    # half the mass takes them instead, and its share is not counted.
    shared = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5]])
    background = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert sinkhorn_transport_cost(shared) == pytest.approx(0.25, abs=1e-3)
    assert sinkhorn_transport_cost(shared, background_cost=background, background_mass=0.5) < 1e-3
    # 0 is the balanced transport exactly; a missing or misshapen background is refused.
    assert sinkhorn_transport_cost(shared, background_cost=background, background_mass=0.0) == sinkhorn_transport_cost(shared)
    with pytest.raises(ValueError, match=r"background_cost of shape \(4,\)"):
        sinkhorn_transport_cost(shared, background_mass=0.3)
    # The model's background is the mean word vector, and the regularizer still moves the topics.
    model, _ = _embedding_model(v=12, k=3, d=4, encoder_layers=[5], prior="dirichlet")
    cost = model.clustering_cost(background_mass=0.3)
    cost.backward()
    assert 0 < cost < model.clustering_cost() and model.topic_embeddings.grad.abs().sum() > 0


def test_ppmi_word_vectors_put_co_occurring_words_together():
    from lightning_module.model import ppmi_word_vectors

    # Words 0-2 always appear together, 3-5 together, never across the groups; word 6 never.
    docs = torch.tensor([[1, 1, 1, 0, 0, 0, 0]] * 5 + [[0, 0, 0, 1, 1, 1, 0]] * 5, dtype=torch.float64)
    vec = ppmi_word_vectors(docs.t() @ docs, n_docs=10, dim=2)
    assert vec.shape == (7, 2) and torch.allclose(vec.norm(dim=1), torch.ones(7), atol=1e-5)
    cos = vec @ vec.t()
    assert min(cos[0, 1], cos[1, 2], cos[3, 4], cos[4, 5]) > 0.99 and abs(float(cos[0, 3])) < 0.01


@pytest.mark.parametrize(
    "kwargs, match",
    [({"decoder": "mlp"}, "decoder='mlp'"), ({"embedding_dim": 1}, "embedding_dim=1"), ({"beta_temperature": 0.0}, "beta_temperature=0.0")],
)
def test_embedding_decoder_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NTMModel(30, 4, **kwargs)
    with pytest.raises(ValueError, match="word_vectors has shape"):
        NTMModel(30, 4, decoder="embedding", embedding_dim=8, word_vectors=torch.zeros(29, 8))
