"""Shared fixtures. Real corpora come only through $EMOTION_MX_DATA (CI: ../shared/data)."""
import os

import pytest


@pytest.fixture(scope="session")
def real_data():
    path = os.environ.get("EMOTION_MX_DATA")
    if not path or not os.path.isdir(path):
        pytest.skip("set EMOTION_MX_DATA to the shared data folder (../shared/data) for real-data tests")
    return path


def copy_media(items, src_root, dst_root):
    """Copy the media files of ``items`` (paths relative to ``src_root``) under ``dst_root``."""
    import shutil
    for it in items:
        for rel in (it.audio, it.video, it.image):
            if rel:
                dst = os.path.join(dst_root, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                if not os.path.exists(dst):
                    shutil.copyfile(os.path.join(src_root, rel), dst)


@pytest.fixture(scope="session")
def cpp_binary(tmp_path_factory):
    """``emotion_predict`` (cpp_deploy/) built once per session into a temporary folder."""
    import shutil
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    from emotion_mx.deploy import cpp
    return cpp.build(str(tmp_path_factory.mktemp("cpp_build")))


@pytest.fixture(scope="session")
def emodb_small_store(real_data, tmp_path_factory):
    """A feature store of 60 real EmoDB utterances (6 per speaker, all 7 classes), 5 folds.

    Built through the EmoDB reader and the normal build; the 60 picked files are copied into
    a temporary root (media reached through symlinks leaving the root are refused).
    """
    from emotion_mx.build import build_dataset
    from emotion_mx.config import AlignConfig, DatasetConfig, SplitConfig
    from emotion_mx.corpora import get_reader
    from emotion_mx.manifest import write_manifest
    src = os.path.join(real_data, "emodb")
    if not os.path.isdir(src):
        pytest.skip(f"no emodb/ under {real_data}")
    root = tmp_path_factory.mktemp("emodb_small")
    items = get_reader("emodb")(src)
    picked, per_speaker = [], {}
    for it in sorted(items, key=lambda it: (it.label, it.id)):      # spread over the classes
        if per_speaker.get(it.group, 0) < 6:
            per_speaker[it.group] = per_speaker.get(it.group, 0) + 1
            picked.append(it)
    copy_media(picked, src, str(root))
    write_manifest(str(root / "manifest.jsonl"), picked)
    out = str(tmp_path_factory.mktemp("emodb_small_store"))
    # the reader's labels are already canonical (the EmoDB letter map is applied on read)
    cfg = DatasetConfig(corpus="manifest", align=AlignConfig(enabled=False), splits=SplitConfig(folds=5),
                        shard_size=16)
    build_dataset("manifest", str(root), out, cfg=cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory):
    """Three briefly trained exports shared by the API and service tests: the tri-modal
    ``mid_tiny`` in fp32 (keys ``fp32`` and ``tri``) and INT8, and an audio-only ``audio_cnn``."""
    from emotion_mx.inference.testing import make_exported
    d = tmp_path_factory.mktemp("exported_models")
    make_exported(str(d / "tri"), str(d / "w1"))
    make_exported(str(d / "int8"), str(d / "w2"), precision="int8")
    make_exported(str(d / "audio"), str(d / "w3"), name="audio_cnn", modalities=("audio",))
    return {"fp32": str(d / "tri"), "tri": str(d / "tri"), "int8": str(d / "int8"), "audio": str(d / "audio")}


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """An exported tri-modal ``mid_tiny`` (briefly trained on synthetic data) shared by the
    streaming and live-page tests: ``emotion_mx.inference.testing.make_exported``."""
    from emotion_mx.inference.testing import make_exported
    d = tmp_path_factory.mktemp("tiny_export")
    model = str(d / "export")
    make_exported(model, str(d), audio_frames=200)
    return model
