"""Export a training run to DIR/{model-symbol.json, model-0000.params, model.json} [+ model.onnx].

    python tools/export.py --run RUN --out DIR [--onnx] [--batch-size B]
"""
import json

import click

from ..provenance import write_command


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="Training run folder (tools/train.py --out).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for the exported model.")
@click.option("--onnx", is_flag=True, help="Also write DIR/model.onnx (opset 13), checked with onnxruntime.")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1),
              help="Batch size recorded in model.json (C++ takes the batch from its inputs).")
def main(run_dir, out_dir, onnx, batch_size):
    from emotion_mx.deploy.export import export
    summary = export(run_dir, out_dir, batch_size=batch_size, onnx=onnx)
    write_command(out_dir)
    click.echo(json.dumps(summary, indent=2))

