import pytest

from ntm_spark.core.contract import ContractError, text_rules_from_manifest
from ntm_spark.core.text import get_normalizer


def test_manifest_without_a_rule_set_name_keeps_the_legacy_rules():
    """Datasets and models written before issue 18 name no rule set: they keep scoring with v1."""
    old = {"params": {"input_format": "20newsgroups"}, "text_rules": {"clean": True, "stop_words": "english"}}
    assert text_rules_from_manifest(old) == {"rules": "v1", "clean": True, "stop_words": "english"}
    assert text_rules_from_manifest(None) == {"rules": "v1", "clean": True, "stop_words": "english"}
    assert text_rules_from_manifest({"params": {"input_format": "csv"}})["clean"] is False
    assert get_normalizer(**text_rules_from_manifest(old)).normalize("it doesn't") == ["doesn"]


def test_manifest_rule_set_name_is_read_and_checked():
    new = {"text_rules": {"rules": "v2", "clean": False, "stop_words": "english"}}
    assert text_rules_from_manifest(new) == {"rules": "v2", "clean": False, "stop_words": "english"}
    assert get_normalizer(**text_rules_from_manifest(new)).normalize("it doesn't") == []
    with pytest.raises(ContractError, match=r"text_rules.rules='v7'.*upgrade ntm-spark"):
        text_rules_from_manifest({"text_rules": {"rules": "v7"}})
