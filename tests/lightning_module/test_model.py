import pytest
import torch

from lightning_module.model import PRESETS, NTMModel, laplace_dirichlet_prior, ntm_loss, resolve_encoder_layers


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
    assert kinds == ["Linear", "Sigmoid", "Linear", "Sigmoid"]
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


def test_padding_weight_zero_is_ignored():
    model = NTMModel(30, 4)
    x = _counts(4)
    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    padded = model.loss(torch.cat([x[:2], torch.zeros(2, 30)]), sample=False, weight=w)
    plain = model.loss(x[:2], sample=False)
    assert torch.isclose(padded.loss, plain.loss)


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


def test_resolve_encoder_layers_auto():
    assert resolve_encoder_layers("auto", 20) == [60, 40]
