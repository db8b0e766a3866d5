"""Predict emotions from raw media with an exported (fp32 or INT8) model, or a ready zoo model.

    emotion-mx predict clip.wav                      # no --model: the zoo model for the inputs given
    emotion-mx predict face.jpg --text "I am fine"   # files by type: audio, image or video
    python tools/predict.py --model DIR [--audio F] [--video F | --image F] [--text T]
                            [--start S --end S] [--json]
    python tools/predict.py --model DIR --manifest items.jsonl --out preds.jsonl [--batch-size N]

The media go through the dataset-building preprocessing recorded in DIR/model.json; any subset
of the model's modalities works (a missing one is masked).  Errors are one line, exit code 2.
"""
import json
import os

import click

from ..deploy.ort_runtime import CHOICES as RUNTIME_CHOICES

from emotion_mx.errors import EmotionMXError


@click.command()
@click.argument("files", nargs=-1, type=click.Path())
@click.option("--model", "model_dir", type=click.Path(), help="Exported model folder (tools/export.py or "
              "tools/quantize.py) or zoo:NAME [the zoo model that fits the inputs: emotion-mx zoo list].")
@click.option("--audio", type=click.Path(), help="Speech: wav/flac/mp3, or a video whose audio track is used.")
@click.option("--video", type=click.Path(), help="Face video (frames are sampled over the segment).")
@click.option("--image", type=click.Path(), help="A still face image (instead of --video).")
@click.option("--text", help="Transcript.")
@click.option("--start", type=float, help="Segment start in seconds (audio and video).")
@click.option("--end", type=float, help="Segment end in seconds (audio and video).")
@click.option("--lang", help="Language of the transcript (en, de, cmn...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a text line.")
@click.option("--manifest", type=click.Path(), help="JSON-lines items (manifest fields; label/group optional).")
@click.option("--root", type=click.Path(), help="Folder the manifest's media paths are relative to [manifest's folder].")
@click.option("--out", type=click.Path(), help="With --manifest: write one JSON line per item here.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1), help="Items per forward pass (--manifest).")
@click.option("--runtime", type=click.Choice(RUNTIME_CHOICES), default="auto", show_default=True,
              help="auto: the faster one measured at export (runtime.json); printed on stderr.")
@click.option("--skip-bad", is_flag=True, help="With --manifest: record unusable items as error rows instead of stopping.")
def main(files, model_dir, audio, video, image, text, start, end, lang, as_json, manifest, root, out, batch_size,
         runtime, skip_bad):
    """Predict from FILES (audio, image or video, by extension) and/or the media options."""
    from emotion_mx.api import ZOO_PREFIX, resolve_model
    from emotion_mx.fileio import write_jsonl
    from emotion_mx.inference.predict import Predictor, format_text, media_item, read_items, summarize

    given = media_arguments(files, audio=audio, video=video, image=image)
    audio, video, image = given.get("audio"), given.get("video"), given.get("image")
    single = any(v is not None for v in (audio, video, image, text))
    if model_dir is None:
        if manifest or not single:
            raise EmotionMXError("give --model DIR (or zoo:NAME) with --manifest; without --model, give media "
                                 "files or --text and the zoo model that fits them is used")
        from emotion_mx.zoo import model_for_inputs
        model_dir = ZOO_PREFIX + model_for_inputs([k for k, v in dict(given, text=text).items() if v is not None])
        click.echo(f"model: {model_dir} (the ready model for these inputs; --model to choose)", err=True)
    model_dir = resolve_model(model_dir)
    if manifest and single:
        raise EmotionMXError("give either --manifest or media options (--audio/--video/--image/--text), not both")
    if not manifest and (out or skip_bad):
        raise EmotionMXError("--out and --skip-bad go with --manifest")
    if manifest:
        items = read_items(manifest)
        predictor = Predictor(model_dir, batch_size=batch_size, runtime=runtime)
        click.echo(predictor.runtime_message, err=True)
        preds = predictor.predict_items(items, root=root or os.path.dirname(os.path.abspath(manifest)),
                                        strict=False, skip_bad=skip_bad)
        rows = [p.to_json() for p in preds]
        if out:
            write_jsonl(out, rows)
        else:
            for r in rows:
                click.echo(json.dumps(r))
        click.echo(json.dumps({"summary": summarize(preds), "out": out}), err=bool(not out))
        return
    item, item_root = media_item(audio=audio, video=video, image=image, text=text, start=start, end=end, lang=lang)
    predictor = Predictor(model_dir, batch_size=1, runtime=runtime)
    click.echo(predictor.runtime_message, err=True)
    pred = predictor.predict_items([item], root=item_root)[0]
    click.echo(json.dumps(pred.to_json()) if as_json else format_text(pred))


def media_arguments(files, **options):
    """``{argument: path}`` from positional FILES (typed by extension: a video file feeds both the
    face and, through its sound track, the audio input) and the explicit media options."""
    from emotion_mx.serve.media import ACCEPTED, VIDEO_TYPES
    out = {k: v for k, v in options.items() if v is not None}
    for path in files:
        ext = os.path.splitext(path)[1].lower()
        kinds = (["video", "audio"] if ext in VIDEO_TYPES else
                 [k for k in ("audio", "image") if ext in ACCEPTED[k]])
        if not kinds:
            raise EmotionMXError(f"{path}: unknown media type '{ext or '(none)'}'; audio: {' '.join(ACCEPTED['audio'][:5])}, "
                                 f"images: {' '.join(ACCEPTED['image'])}, video: {' '.join(VIDEO_TYPES)} "
                                 "(or name it with --audio/--image/--video)")
        for kind in kinds:
            if kind in out and out[kind] != path and not (kind == "audio" and ext in VIDEO_TYPES):
                raise EmotionMXError(f"two {kind} inputs ({out[kind]} and {path}); give one")
            out.setdefault(kind, path)
    if "video" in out and "image" in out:
        raise EmotionMXError(f"give a video or an image, not both ({out['video']}, {out['image']})")
    return out
