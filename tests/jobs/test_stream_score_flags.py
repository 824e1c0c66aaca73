"""`ntm stream`'s drift flags resolve to the stream.drift* config keys (no Spark needed)."""

import pytest

from jobs.stream_score import build_parser, main, stream_config_from_args


def test_drift_is_on_by_default_and_the_flags_set_it():
    cfg = stream_config_from_args(build_parser().parse_args([]))
    assert cfg.drift and cfg.drift_window_s == 60 and cfg.drift_topic_name == "topic-mixtures-drift"
    cfg = stream_config_from_args(build_parser().parse_args(["--no-drift", "--drift-window", "30 seconds", "--output-topic", "o"]))
    assert not cfg.drift and cfg.drift_window_s == 30 and cfg.drift_topic_name == "o-drift"


@pytest.mark.parametrize(
    "args, match",
    [
        (["--drift-window", "soon"], "stream.drift_window='soon'"),
        (["--set", "drift_js_distance=0"], "stream.drift_js_distance=0"),
        (["--set", "drift_topic=topic-mixtures"], "stream.drift_topic='topic-mixtures'"),
    ],
)
def test_bad_drift_settings_are_config_errors(args, match, capsys):
    assert main(["--status", *args]) == 2
    assert match in capsys.readouterr().err
