import re
from pathlib import Path

import pytest

from smppguard.config import Config, ConfigError, duration, load_config, options, parse_config

SHIPPED = Path(__file__).parent.parent / "config" / "smppguard.toml"


def test_config_empty_file_gives_defaults():
    assert parse_config("") == Config(source="<string>")


def test_config_values_parsed():
    cfg = parse_config('[listen]\naddress = "0.0.0.0:2775"\n[upstream]\naddress = "10.0.0.1:2775"\n'
                       'window = 20\nmax_tps = 50\n[session]\nresponse_timeout = "500ms"\n'
                       'enquire_link_interval = "1m"\n')
    assert cfg.listen.address == ("0.0.0.0", 2775)
    assert cfg.upstream.address == ("10.0.0.1", 2775)
    assert cfg.upstream.window == 20 and cfg.upstream.max_tps == 50.0
    assert cfg.session.response_timeout == 0.5 and cfg.session.enquire_link_interval == 60.0
    assert parse_config('[upstream]\naddress = "simulator"\n').upstream.address is None


@pytest.mark.parametrize("text, key, line, hint", [
    ("[upstrem]\n", "upstrem", 1, "did you mean 'upstream'"),
    ("[upstream]\nwindw = 3\n", "upstream.windw", 2, "did you mean 'window'"),
    ("# c\n[upstream]\n\nwindow = \"x\"\n", "upstream.window", 4, "whole number"),
    ("[upstream]\nwindow = 0\n", "upstream.window", 2, "from 1"),
    ("[listen]\naddress = \"nohost\"\n", "listen.address", 2, "host:port"),
    ("[session]\nresponse_timeout = \"soon\"\n", "session.response_timeout", 2, "duration"),
    ("[text]\ndefault_codec = \"klingon\"\n", "text.default_codec", 2, "unknown text codec"),
    ("[log]\nlevel = \"loud\"\n", "log.level", 2, "one of"),
    ("[store]\nretention = \"7d\"\n", "store.retention", 2, "at least 32d"),
    ("[policy]\n\ndistribution_lists = \"maybe\"\n", "policy.distribution_lists", 3, "'refuse', 'pass'"),
])
def test_config_error_names_key_and_line(text, key, line, hint):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "f.toml")
    assert (e.value.key, e.value.line) == (key, line)
    assert hint in str(e.value)
    assert str(e.value).startswith(f"f.toml:{line}: {key}: ")


def test_config_syntax_error_has_line():
    with pytest.raises(ConfigError) as e:
        parse_config("[upstream]\nwindow = = 3\n", "f.toml")
    assert e.value.line == 2


def test_config_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_config_duration_forms():
    assert [duration(v) for v in (5, 1.5, "30s", "5m", "2h", "3d", "250ms")] == [5, 1.5, 30, 300, 7200,
                                                                                 259200, 0.25]
    with pytest.raises(ValueError):
        duration(True)


def test_shipped_config_loads_and_documents_every_option():
    cfg = load_config(SHIPPED)
    assert cfg.upstream.address is None  # the simulator: runs with no carrier
    text = SHIPPED.read_text()
    for table, key, _default, _help in options():
        assert re.search(rf"^\[{table}\]", text, re.M), f"[{table}] missing from the shipped config"
        assert re.search(rf"^#?\s*{key}\s*=", text, re.M), f"{table}.{key} missing from the shipped config"


def test_shipped_config_documents_every_rule_setting():
    import dataclasses

    from smppguard.policy import RULES

    cfg = load_config(SHIPPED)
    text = SHIPPED.read_text()
    for rule, settings in cfg.policy.rules:
        section = re.search(rf"^\[rules\.{rule.name}\]\n(.*?)(?=^\[)", text, re.M | re.S)
        assert section, f"[rules.{rule.name}] missing from the shipped config"
        for f in dataclasses.fields(settings):
            if (rule.name, f.name) in {("frequency", "fallback_zone"), ("invalid", "default_region")}:
                continue  # taken from [policy], not a key of the rule
            assert re.search(rf"^#?\s*{f.name}\s*=", section.group(1), re.M), f"rules.{rule.name}.{f.name}"
    assert [r.name for r, _ in cfg.policy.rules] == [r.name for r in RULES]


def test_config_is_looked_for_in_the_environment_then_etc_then_defaults(tmp_path, monkeypatch):
    import smppguard.config as config_module

    etc = tmp_path / "etc.toml"
    etc.write_text('[upstream]\nwindow = 7\n')
    env = tmp_path / "env.toml"
    env.write_text('[upstream]\nwindow = 3\n')
    monkeypatch.setattr(config_module, "DEFAULT_PATHS", (tmp_path / "missing.toml", etc))
    monkeypatch.setenv("SMPPGUARD_CONFIG", str(env))
    assert (load_config().upstream.window, load_config().source) == (3, str(env))
    monkeypatch.delenv("SMPPGUARD_CONFIG")
    assert (load_config().upstream.window, load_config().source) == (7, str(etc))
    monkeypatch.setattr(config_module, "DEFAULT_PATHS", (tmp_path / "missing.toml",))
    assert load_config().source == "<defaults>" and load_config().upstream.window == 10


def test_an_mqtt_url_is_taken_apart_once_and_a_bad_one_is_named():
    from smppguard.config import Broker, ConfigError, parse_config

    cfg = parse_config('[mqtt]\nurl = "mqtts://node%20a:p%40ss@broker.example:8884"\nnode = "a"\n')
    assert cfg.mqtt.broker == Broker("broker.example", 8884, True, "node a", "p@ss")
    assert parse_config('[mqtt]\nurl = "mqtt://127.0.0.1"\n').mqtt.broker == Broker("127.0.0.1", 1883, False,
                                                                                    None, None)
    assert parse_config('[mqtt]\nurl = "mqtts://h"\n').mqtt.broker.port == 8883
    for bad in ("http://h:1883", "mqtt://", "mqtt://h:99999", "mqtt://h/path", "mqtt://h?x=1"):
        with pytest.raises(ConfigError, match=r"mqtt\.url.*not a broker URL"):
            parse_config(f'[mqtt]\nurl = "{bad}"\n')
