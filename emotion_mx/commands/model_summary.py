"""Print a Markdown table of every model preset: parameters and multiply-adds (MACs).

    .venv/bin/python tools/model_summary.py [--num-classes 4] [--audio-frames 300] ...

MACs are for one sample (batch 1) at the given feature shapes, counted from the symbol graph
(Dense, Convolution, batch_dot, RNN; see emotion_mx.models.summary).  Parameters are the
trainable ones (BatchNorm running statistics excluded).
"""
import sys

import click

from emotion_mx.errors import EmotionMXError


@click.command()
@click.option("--num-classes", default=4, show_default=True, type=int)
@click.option("--audio-dim", default=64, show_default=True, type=int, help="features per audio frame")
@click.option("--audio-frames", default=300, show_default=True, type=int, help="padded audio frames")
@click.option("--vocab-size", default=5000, show_default=True, type=int)
@click.option("--max-tokens", default=32, show_default=True, type=int)
@click.option("--num-frames", default=8, show_default=True, type=int, help="face frames per sample")
@click.option("--frame-size", default=48, show_default=True, type=int)
@click.option("--frame-channels", default=1, show_default=True, type=int)
@click.option("--model", "models", multiple=True, help="only these presets (repeatable)")
def main(num_classes, audio_dim, audio_frames, vocab_size, max_tokens, num_frames, frame_size,
         frame_channels, models):
    import warnings
    warnings.filterwarnings("ignore")
    from emotion_mx.models import PRESETS, model_info, model_input_sizes, summarize, valid_kwargs
    feats = dict(audio_dim=audio_dim, audio_frames=audio_frames, vocab_size=vocab_size,
                 max_tokens=max_tokens, num_frames=num_frames, frame_size=frame_size,
                 frame_channels=frame_channels)
    try:
        names = list(models) or sorted(PRESETS)
        rows = []
        for name in names:
            _, fixed, hp = model_info(name)          # an unknown name: one error line
            family = PRESETS[name][0] if name in PRESETS else "registered"   # register_model: no family
            # a pretrained encoder fixes its own input sizes (80 Whisper mel bins, 64 px faces)
            sizes = model_input_sizes(name)
            kw = {k: sizes.get(k, v) for k, v in feats.items() if k in valid_kwargs(name)}
            s = summarize(name, num_classes=num_classes, **kw)
            mods = "+".join(fixed or ("audio", "text", "video"))
            rows.append(f"| `{name}` | {family} | {mods} | {hp.get('units')} | "
                        f"{s['params'] / 1e6:.3f} M | {s['macs'] / 1e6:.1f} M |")
    except EmotionMXError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(f"Feature shapes: audio {audio_frames}x{audio_dim}, {max_tokens} tokens "
               f"(vocab {vocab_size}), {num_frames} frames of {frame_channels}x{frame_size}x"
               f"{frame_size} (presets on pretrained encoders: their own sizes); {num_classes} classes; "
               "MACs per sample.\n")
    click.echo("| model | family | modalities | units | params | MACs |")
    click.echo("|---|---|---|---|---|---|")
    for r in rows:
        click.echo(r)

