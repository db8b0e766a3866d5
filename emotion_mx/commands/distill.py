"""Distil a trained run (teacher) into a smaller preset (student); side-by-side report."""
import click

from ..cli import SET_HELP
from ..errors import EmotionMXError
from ..provenance import write_command


@click.command()
@click.option("--teacher", "teacher_run", required=True, type=click.Path(), help="Teacher run folder.")
@click.option("--student", required=True, help="Student preset (emotion_mx.models.list_models()), e.g. mid_student.")
@click.option("--data", "data_dir", required=True, type=click.Path(), help="Feature store the teacher was trained on.")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Student run folder.")
@click.option("--config", "config_path", type=click.Path(), help="Training YAML for the student (default: the teacher's).")
@click.option("--alpha", default=0.5, show_default=True, help="Weight of the soft (KL) term; 1 - alpha for hard CE.")
@click.option("--temperature", "-T", default=4.0, show_default=True, help="Softmax temperature.")
@click.option("--feature-weight", default=0.0, show_default=True,
              help="Weight of feature matching (similarity-preserving KD on the head's input); 0 = off.")
@click.option("--epochs", type=int, help="Override epochs.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["valid", "test"]),
              help="Split for the reported UA (selection always uses valid).")
@click.option("--cpus", type=int, help="Number of CPU contexts.")
@click.option("--gpus", help="GPU ids.")
@click.option("--resume", is_flag=True)
@click.option("--quiet", is_flag=True)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def main(teacher_run, student, data_dir, out_dir, config_path, alpha, temperature, feature_weight, epochs, split,
         cpus, gpus, resume, quiet, sets):
    from emotion_mx.config import replace
    from emotion_mx.training import distill, format_report, load_train_config, make_contexts
    if sets and not config_path:
        raise EmotionMXError("--set needs --config (the student's training YAML)")
    cfg = None
    if config_path:
        cfg = load_train_config(config_path, sets=sets)
        cfg = replace(cfg, model=replace(cfg.model, name=student))
    contexts, note = make_contexts(gpus=gpus, cpus=cpus)
    if note:
        click.echo(note)
    report = distill(teacher_run, student, data_dir, out_dir, cfg=cfg, alpha=alpha, temperature=temperature,
                     feature_weight=feature_weight, contexts=contexts, split=split, epochs=epochs, resume=resume,
                     progress=not quiet,
                     echo=click.echo)
    write_command(out_dir)
    click.echo(format_report(report))
    click.echo(f"wrote {out_dir}/distill.json")

