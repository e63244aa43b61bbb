"""``hallgate halt ...``: collect, train and evaluate the HALT detector."""

import typer

app = typer.Typer(help="HALT detector: collect answers with logprobs, train, evaluate.")
