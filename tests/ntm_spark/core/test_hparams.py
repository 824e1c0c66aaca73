"""The hyperparameter table: one declaration that the config, presets, model and system derive from."""

import dataclasses
import inspect
import typing
from pathlib import Path

import pytest
import yaml

from ntm_spark.core import hparams as hp
from ntm_spark.core.config import ConfigError, TrainConfig, from_dict, load_config

ROOT = Path(__file__).resolve().parents[3]
#: Constructor arguments that are not hyperparameters: facts from the data, run settings, the metrics' sizes.
MODEL_OTHER_ARGS = {"vocab_size", "word_vectors", "background"}
SYSTEM_OTHER_ARGS = MODEL_OTHER_ARGS | {"num_threads", "npmi_top_n", "diversity_top_n", "direct_steps"}


def _accepted(cls) -> set[str]:
    """Named arguments plus the hyperparameters its ``**hparams`` takes (by asking it)."""
    params = inspect.signature(cls.__init__).parameters
    named = {n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    extra = set()
    for name in hp.hparam_names():
        try:
            cls(vocab_size=30, num_topics=4, **({name: hp.DEFAULTS[name]} if name != "num_topics" else {}))
        except TypeError as err:
            assert "unexpected keyword argument" in str(err) and repr(name) in str(err), err
            continue
        extra.add(name)
    return named | extra


def test_every_field_is_declared_once_with_a_consumer_and_a_doc():
    fields = hp.hparam_fields()
    names = [f.name for f in fields]
    assert len(names) == len(set(names))
    for f in fields:
        assert f.metadata["consumer"] in hp.CONSUMERS, f.name
        assert f.metadata["doc"].strip(), f.name
        assert (f.metadata["valid"] is None) == (not f.metadata["fix"]), f"{f.name}: a range needs its fix, and the reverse"


def test_train_config_takes_every_hyperparameter_from_the_table_unchanged():
    own = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints, table_hints = typing.get_type_hints(TrainConfig), typing.get_type_hints(hp.Hyperparameters)
    for f in hp.hparam_fields():
        assert own[f.name] is f, f.name  # inherited, not redeclared
        assert hints[f.name] == table_hints[f.name] and own[f.name].default == f.default, f.name
    # The other train keys are run settings, not hyperparameters.
    assert "preset" in own and "seed" in own and not set(hp.hparam_names()) & {"preset", "seed", "data_dir"}


def test_train_yaml_keys_keep_their_order_and_base_defaults_match():
    base = yaml.safe_load((ROOT / "conf" / "base" / "train.yaml").read_text())
    assert list(base) == [f.name for f in dataclasses.fields(TrainConfig)]
    defaults = TrainConfig()
    for name in hp.hparam_names():
        assert base[name] == getattr(defaults, name), name
    cfg = load_config("train")
    assert all(getattr(cfg, n) == getattr(defaults, n) for n in hp.hparam_names())


def test_presets_only_name_declared_preset_fields():
    declared = set(hp.hparam_names())
    assert set(typing.get_args(hp.PresetName)) == set(hp.PRESETS)
    for name, values in hp.PRESETS.items():
        assert set(values) <= declared, f"preset {name} names undeclared keys {set(values) - declared}"
        assert tuple(values) == hp.PRESET_FIELDS, f"preset {name} must set the same fields in the same order"
    for name in hp.PRESET_FIELDS:
        assert getattr(hp.Hyperparameters(), name) is None, f"{name}: a preset field's config default must be null"


@pytest.mark.parametrize("preset", ["default", "sagemaker"])
def test_preset_values_pass_the_declared_types_and_ranges(preset):
    cfg = from_dict(TrainConfig, dict(hp.PRESETS[preset]))  # every preset value, set explicitly
    assert hp.resolve_presets(cfg, preset) == hp.PRESETS[preset]
    assert hp.invalid_hparam(cfg) is None


def test_resolve_fills_nulls_from_the_preset_and_keeps_set_values():
    cfg = from_dict(TrainConfig, {"preset": "sagemaker", "optimizer": "adam", "num_topics": 7})
    resolved = hp.resolve_hparams(cfg, cfg.preset)
    assert list(resolved) == list(hp.hparam_names())
    assert resolved["optimizer"] == "adam" and resolved["learning_rate"] == 0.001 and resolved["num_topics"] == 7
    assert hp.DEFAULTS == hp.resolve_hparams(hp.Hyperparameters(), "sagemaker")
    with pytest.raises(ValueError, match="preset='nope'"):
        hp.resolve_presets(cfg, "nope")


def test_model_accepts_exactly_its_declared_fields():
    from lightning_module.model import NTMModel

    assert _accepted(NTMModel) == set(hp.hparam_names(hp.MODEL)) | MODEL_OTHER_ARGS


def test_system_accepts_exactly_the_model_and_system_fields():
    from lightning_module.system import NTMSystem

    assert _accepted(NTMSystem) == set(hp.hparam_names(hp.MODEL, hp.SYSTEM)) | SYSTEM_OTHER_ARGS


def test_defaults_of_model_and_system_are_the_sagemaker_preset():
    from lightning_module.system import NTMSystem

    system = NTMSystem(vocab_size=30, num_topics=4)
    for name in hp.hparam_names(hp.MODEL, hp.SYSTEM):
        if name != "num_topics":
            assert system.hparams[name] == hp.DEFAULTS[name], name
    assert system.model.config["encoder_layers"] == [12, 8] and "decoder" not in system.model.config


def test_from_hparams_picks_its_fields_and_ignores_the_rest():
    from lightning_module.model import NTMModel
    from lightning_module.system import NTMSystem

    resolved = hp.resolve_hparams(from_dict(TrainConfig, {"num_topics": 5}), "default")
    model = NTMModel.from_hparams(resolved, vocab_size=30)
    assert model.config["decoder"] == "embedding" and model.config["dropout"] == 0.0 and model.num_topics == 5
    system = NTMSystem.from_hparams(resolved, vocab_size=30, num_threads=1)
    assert system.hparams.optimizer == "adam" and system.hparams.ecr_weight == 1000.0 and "epochs" not in system.hparams


def test_a_range_violation_names_the_config_key_value_and_fix():
    with pytest.raises(ConfigError, match=r"train\.dropout=1\.0: use a probability in \[0, 1\)"):
        load_config("train", overrides=["dropout=1.0"])
    with pytest.raises(ConfigError, match=r"train\.mini_batch_size=10001: use an integer between 1 and 10000"):
        load_config("train", overrides=["mini_batch_size=10001"])


def test_plain_value_follows_the_declared_type():
    assert hp.plain_value("dropout", 0) == 0.0 and isinstance(hp.plain_value("dropout", 0), float)
    assert hp.plain_value("num_topics", 4.0) == 4 and hp.plain_value("decoder", "linear") == "linear"
    assert hp.plain_value("encoder_layers", [3, 2]) == [3, 2]
