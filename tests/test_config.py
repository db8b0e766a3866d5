"""YAML → frozen dataclasses: strict keys, types, resolved copies."""
import dataclasses

import pytest
import yaml

from emotion_mx.config import DatasetConfig, dump_config, load_config
from emotion_mx.errors import ConfigError


def _write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_values_and_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, "audio: {n_mels: 40}\nlabels: {map: {exc: happy}, drop: [xxx]}\n"),
                      DatasetConfig)
    assert cfg.audio.n_mels == 40 and cfg.audio.hop_ms == 10.0
    assert dict(cfg.labels.map) == {"exc": "happy"} and cfg.labels.drop == ("xxx",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.audio.n_mels = 3


def test_unknown_key_names_key_and_file(tmp_path):
    p = _write(tmp_path, "audio:\n  n_mel: 40\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, DatasetConfig)
    assert str(p) in str(e.value) and "'audio.n_mel'" in str(e.value) and "n_mels" in str(e.value)


@pytest.mark.parametrize("text,msg", [("audio: {n_mels: many}", "'audio.n_mels' must be an integer"),
                                      ("face: {detect: 3}", "'face.detect' must be true or false"),
                                      ("audio: [1, 2]", "'audio' must be a mapping"),
                                      ("audio: {n_mels: [", "not valid YAML")])
def test_type_errors(tmp_path, text, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(_write(tmp_path, text), DatasetConfig)


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", DatasetConfig)


def test_resolved_copy_round_trips(tmp_path):
    cfg = load_config(_write(tmp_path, "splits: {folds: 3}\nreader: {path: x.tsv}\n"), DatasetConfig)
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out)
    data = yaml.safe_load(out.read_text())
    assert data["splits"]["folds"] == 3 and data["audio"]["n_mels"] == 64   # defaults filled in
    assert load_config(out, DatasetConfig) == cfg


def test_shipped_dataset_configs_are_valid():
    import glob
    paths = glob.glob("configs/datasets/*.yaml")
    assert len(paths) >= 5
    for p in paths:
        load_config(p, DatasetConfig)
