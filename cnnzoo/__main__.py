from cnnzoo.cli import run

run()
