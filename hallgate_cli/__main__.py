from hallgate_cli import app

app()
