import pytest

from ntm_spark.core.config import ConfigError, PreprocessConfig, from_dict, load_config, parse_overrides


def test_base_config_loads_with_defaults():
    cfg = load_config("preprocess")
    assert isinstance(cfg, PreprocessConfig)
    assert cfg.vocab_size == 2000
    assert cfg.split == [0.8, 0.1, 0.1]


def test_overrides_are_parsed_as_yaml_and_win():
    cfg = load_config("preprocess", overrides=["vocab_size=500", "split=[0.7, 0.2, 0.1]", "stop_words=[foo, bar]"])
    assert cfg.vocab_size == 500
    assert cfg.split == [0.7, 0.2, 0.1]
    assert cfg.stop_words == ["foo", "bar"]



def test_local_layer_and_config_file(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "preprocess.yaml").write_text("vocab_size: 100\nmin_df: 1\n")
    (tmp_path / "local" / "preprocess.yaml").write_text("vocab_size: 200\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("min_df: 3\n")
    cfg = load_config("preprocess", conf_root=tmp_path, config_file=str(extra), overrides=["threshold=5"])
    assert (cfg.vocab_size, cfg.min_df, cfg.threshold) == (200, 3.0, 5)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown config key 'preprocess.vocab_sise'"):
        load_config("preprocess", overrides=["vocab_sise=10"])


def test_wrong_type_is_named_with_value():
    with pytest.raises(ConfigError, match=r"preprocess.vocab_size='many'.*integer"):
        load_config("preprocess", overrides=["vocab_size=many"])
    with pytest.raises(ConfigError, match="true or false"):
        load_config("preprocess", overrides=["overwrite=maybe"])


def test_out_of_range_is_named_with_fix():
    with pytest.raises(ConfigError, match=r"preprocess.split=\[0.5, 0.1, 0.1\].*sum to 1"):
        load_config("preprocess", overrides=["split=[0.5, 0.1, 0.1]"])
    with pytest.raises(ConfigError, match="services.kafka_port=70000"):
        load_config("services", overrides=["kafka_port=70000"])
    with pytest.raises(ConfigError, match=r"stream.max_tasks_per_batch=0.*integer >= 1"):
        load_config("stream", overrides=["max_tasks_per_batch=0"])
    with pytest.raises(ConfigError, match=r"stream.max_tasks_per_batch=1.*real_time"):
        load_config("stream", overrides=["max_tasks_per_batch=1", "trigger=real_time"])
    assert load_config("stream", overrides=["max_tasks_per_batch=1"]).max_tasks_per_batch == 1
    assert load_config("stream").max_tasks_per_batch == "auto"
    assert load_config("stream", overrides=["max_tasks_per_batch=null"]).max_tasks_per_batch is None
    assert load_config("stream", overrides=["max_tasks_per_batch=auto", "trigger=real_time"]).trigger == "real_time"
    with pytest.raises(ConfigError, match=r"stream.max_tasks_per_batch='many'"):
        load_config("stream", overrides=["max_tasks_per_batch=many"])
    with pytest.raises(ConfigError, match=r"stream.scoring_threads=0"):
        load_config("stream", overrides=["scoring_threads=0"])


def test_literal_choices_listed():
    with pytest.raises(ConfigError, match="choose one of"):
        load_config("preprocess", overrides=["input_format=xml"])


def test_bad_override_syntax_and_unknown_stage():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["vocab_size"])
    with pytest.raises(ConfigError, match="unknown config stage"):
        load_config("nope")


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("preprocess", config_file=str(tmp_path / "missing.yaml"))


def test_from_dict_builds_plain_dataclass():
    cfg = from_dict(PreprocessConfig, {"vocab_size": 10})
    assert cfg.vocab_size == 10 and cfg.min_df == 2.0


def test_dotted_override_reaches_nested_mapping():
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_train_config_keys_and_defaults_are_unchanged():
    """The hyperparameters moved to ntm_spark.core.hparams; train.yaml's keys, order and defaults did not."""
    from ntm_spark.core.config import TrainConfig, to_dict

    cfg = to_dict(load_config("train"))
    expected = {
        "preset": "default", "feature_dim": None, "num_topics": 20, "encoder_layers": "auto", "encoder_layers_activation": None,
        "batch_norm": None, "optimizer": None, "learning_rate": None, "mini_batch_size": 256, "epochs": 50,
        "num_patience_epochs": 3, "tolerance": 0.001, "clip_gradient": None, "rescale_gradient": 1.0, "weight_decay": 0.0,
        "sub_sample": 1.0, "encoder_input": None, "topic_activation": None, "prior": None, "dirichlet_alpha": None,
        "decoder_batch_norm": None, "dropout": None, "kl_warmup_epochs": None, "adam_beta1": None, "min_epochs": None,
        "decoder": None, "word_embeddings": None, "embedding_dim": None, "beta_temperature": None, "ecr_weight": None,
        "ecr_background_mass": None, "topic_similarity_weight": None, "sample_latent": True, "reader": "arrow", "shuffle": True, "num_workers": 2, "shuffle_buffer": 4096, "drop_last": False,
        "resident": False, "steps_per_execution": 1, "accelerator": "auto", "devices": "auto", "num_nodes": 1,
        "strategy": "auto", "precision": "32-true", "threads_per_process": None, "seed": 42, "deterministic": False,
        "checkpoint": True, "resume": None, "progress_bar": None, "log_every_n_steps": 50, "top_n_words": 10,
        "npmi_reference": "train+heldout", "npmi_reference_max_docs": 100000, "fail_on_collapse": False,
    }  # fmt: skip
    assert list(cfg) == ["data_dir", "output_dir", *expected, "petastorm", "warm_start"]
    assert cfg["warm_start"] == {"model": None, "replay_data": "auto", "replay_fraction": 1.0, "move_threshold": None}
    assert {k: cfg[k] for k in expected} == expected
    petastorm = dict(cfg["petastorm"])
    assert petastorm.pop("cache_dir_url").endswith("petastorm-cache")  # a .ntm/ path: resolved to the state folder
    assert petastorm == {"reader_pool_type": "dummy", "workers_count": 2}
    assert to_dict(TrainConfig()).keys() == cfg.keys()


def test_preprocess_defaults_and_checks_for_issue_18():
    cfg = load_config("preprocess")
    assert cfg.text_rules == "v2" and cfg.keep_official_split is None and cfg.vocab_fit_splits == ["train"]
    assert load_config("preprocess", overrides=["text_rules=notebook"]).text_rules == "notebook"
    with pytest.raises(ConfigError, match=r"text_rules='v9'.*notebook"):
        load_config("preprocess", overrides=["text_rules=v9"])
    with pytest.raises(ConfigError, match=r"vocab_fit_splits.*\[train\]"):
        load_config("preprocess", overrides=["vocab_fit_splits=[train, dev]"])
    with pytest.raises(ConfigError, match="keep_official_split"):
        load_config("preprocess", overrides=["input_format=csv", "keep_official_split=true"])


def test_npmi_reference_setting_is_checked():
    assert load_config("train", overrides=["npmi_reference=test"]).npmi_reference == "test"
    with pytest.raises(ConfigError, match=r"npmi_reference='train\+bogus'.*heldout"):
        load_config("train", overrides=["npmi_reference=train+bogus"])
