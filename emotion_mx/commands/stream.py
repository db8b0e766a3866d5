"""Realtime emotion recognition on a video file (or a camera), window by window.

    python tools/stream.py --model DIR --video clip.avi [--audio speech.wav] [--transcript subs.srt]
                           [--window 2.0 --hop 0.5] [--tolerance 0.1] [--ema 0.5]
                           [--realtime/--no-realtime] [--out preds.jsonl]
    python tools/stream.py --model DIR --audio speech.wav            # audio only
    python tools/stream.py --model DIR --camera 0 [--mic] [--max-seconds 60]
    python tools/stream.py --model DIR --mic                         # microphone only
    ... [--latency-budget 0.5]    # degrade quality when behind (docs/inference.md "Quality levels")
    ... [--face-detector auto|haar|yunet] [--detect-every 5]   # face detection cost (README "Prediction and streaming")

One JSON line per window (start, end, label, probabilities, modalities present, latency_ms,
smoothed track), then a summary line {"summary": {...}} with latency statistics, the realtime
factor and the dropped-data counters.  Errors are one line, exit code 2.
"""
import json

import click

from ..deploy.ort_runtime import CHOICES as RUNTIME_CHOICES

from emotion_mx.errors import EmotionMXError

@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="Exported model folder (fp32 or INT8).")
@click.option("--video", type=click.Path(), help="Video file: frames, and its audio track unless --audio.")
@click.option("--camera", type=int, help="Camera index for cv2.VideoCapture (live).")
@click.option("--mic", is_flag=True, help="Audio from the default microphone, alone or with --camera (needs sounddevice).")
@click.option("--audio", type=click.Path(), help="Audio file: alone (audio-only stream) or instead of the video's audio track.")
@click.option("--transcript", type=click.Path(), help="Subtitles (.srt or .vtt) for the text modality.")
@click.option("--out", type=click.Path(), help="Write the JSON lines here (summary printed too) instead of stdout.")
@click.option("--window", default=2.0, show_default=True, type=click.FloatRange(min=0.05), help="Window length, seconds.")
@click.option("--hop", default=0.5, show_default=True, type=click.FloatRange(min=0.01), help="Window step, seconds.")
@click.option("--tolerance", default=0.1, show_default=True, type=click.FloatRange(min=0.0),
              help="Max. time difference when pairing frames with audio / waiting for a lagging stream, seconds.")
@click.option("--ema", default=0.5, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Weight of the newest window in the smoothed track (1 = no smoothing).")
@click.option("--min-partial", type=click.FloatRange(min=0.0), help="Shortest last partial window kept, seconds [window/2].")
@click.option("--realtime/--no-realtime", default=True, show_default=True,
              help="Release file data at wall-clock pace, or as fast as possible (same outputs).")
@click.option("--latency-budget", type=click.FloatRange(min=0.0, min_open=True),
              help="Seconds per window (latency or lag); when over, quality steps down, and back up when load falls.")
@click.option("--face-detector", type=click.Choice(["auto", "haar", "yunet"]), default="auto", show_default=True,
              help="auto: YuNet when its model file is found (face.detector_model or $EMOTION_MX_YUNET_MODEL), "
                   "else the model's own detector.")
@click.option("--detect-every", default=5, show_default=True, type=click.IntRange(min=1),
              help="Detect faces on every k-th new frame; a template tracker follows the face in between "
                   "(1: detect on every frame, as when the store was built).")
@click.option("--max-seconds", type=click.FloatRange(min=0.0, min_open=True), help="Stop a live stream after this long.")
@click.option("--runtime", type=click.Choice(RUNTIME_CHOICES), default="auto", show_default=True,
              help="auto: the faster one measured at export (runtime.json); printed on stderr.")
def main(model_dir, video, camera, mic, audio, transcript, out, window, hop, tolerance, ema, min_partial,
         realtime, latency_budget, face_detector, detect_every, max_seconds, runtime):
    from emotion_mx.fileio import atomic_path
    from emotion_mx.inference.predict import Predictor
    from emotion_mx.inference.stream import StreamRunner, open_sources
    from emotion_mx.inference.subtitles import read_subtitles

    predictor = Predictor(model_dir, batch_size=1, runtime=runtime)
    click.echo(predictor.runtime_message, err=True)
    cues = read_subtitles(transcript) if transcript else None
    runner = StreamRunner(predictor, window=window, hop=hop, tolerance=tolerance, ema=ema, cues=cues,
                          min_partial=min_partial, latency_budget=latency_budget, face_detector=face_detector,
                          detect_every=detect_every)
    sources, live = open_sources(predictor.modalities, predictor.config.audio.sample_rate, video=video,
                                 camera=camera, mic=mic, audio=audio, max_seconds=max_seconds)

    def emit(write):
        for row in runner.run(sources, live=live, realtime=realtime):
            write(json.dumps(row))
        summary = {"summary": runner.summary()}
        received = summary["summary"]["received"]
        if not live and received["frames"] == 0 and received["audio_chunks"] == 0:
            # every file source failed before giving any data (e.g. a corrupt file): not a result
            reasons = "; ".join(f"{getattr(s, 'path', s.kind)}: {s.error}" for s in sources if getattr(s, "error", None))
            raise EmotionMXError(f"no audio or video could be read ({reasons or 'the inputs are empty'}); "
                                 "check the files (ffmpeg must be able to decode them)")
        write(json.dumps(summary))
        return summary

    if out:
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            summary = emit(lambda line: f.write(line + "\n"))
        click.echo(json.dumps(summary, indent=2))
    else:
        emit(click.echo)
