from polymodal.cli.main import entry

entry()
