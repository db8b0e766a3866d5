"""``emotion-mx zoo list | info NAME | build NAME``: the ready models."""
import json

import click


@click.group()
def zoo():
    """Ready, trained emotion models: no corpus and no training needed."""


@zoo.command("list")
def list_cmd():
    """The zoo models, their modalities and their headline figure."""
    from emotion_mx.zoo import CARDS, read_measured
    from emotion_mx.zoo.report import headline
    for name, card in sorted(CARDS.items()):
        measured = read_measured(name)
        click.echo(f"{name:<11} {'+'.join(card.modalities):<17} {headline(name, measured)}")


@zoo.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The measured card as JSON.")
def info(name, as_json):
    """The model card of NAME: data, labels, intended use, limits, measured figures."""
    from emotion_mx.zoo import get_card, read_measured
    from emotion_mx.zoo.report import card_markdown
    card, measured = get_card(name), read_measured(name)
    click.echo(json.dumps(measured, indent=1) if as_json else card_markdown(card, measured))


@zoo.command()
@click.argument("name")
@click.option("--data-root", type=click.Path(), help="Shared data folder [$EMOTION_MX_DATA].")
@click.option("--work", default="work/zoo", show_default=True, type=click.Path(),
              help="Stores and embedding caches (resumed).")
@click.option("--out", type=click.Path(), help="Where heads/ and cards/ go [the installed package's own folders].")
def build(name, data_root, work, out):
    """Retrain zoo model NAME from the shared corpora and measure it (recipe: configs/zoo/)."""
    from emotion_mx.zoo.recipe import build_zoo_model
    card = build_zoo_model(name, root=data_root, work=work, out=out, log=lambda m: click.echo(m, err=True))
    from emotion_mx.zoo.report import headline
    click.echo(f"{name}: {headline(name, card)}")


@zoo.command()
@click.argument("name")
def path(name):
    """Assemble NAME once (cached) and print its exported model folder (for serve, cpp-predict...)."""
    from emotion_mx.zoo import ensure_exported
    click.echo(ensure_exported(name, log=lambda m: click.echo(m, err=True)))
